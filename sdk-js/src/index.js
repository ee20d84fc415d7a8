// Write exum-router routing policies in JavaScript or TypeScript.
//
// A policy is an ES module exporting `handler = exportPolicy({...})`, built into a
// component by `exum-router build`; under Node, the same module is unit-tested
// against the in-memory `TestHost` of `@exum-router/policy-sdk/testing`.

export { Uri, Param, UriError, parseUri, addrSpec, normalizeNumber, numberKey, extension, reasonPhrase } from './uri.js';
export { Request, longHeaderName } from './request.js';
export { Decision, Forward, Target, Reject, Redirect, msDiagnostics } from './decision.js';
export { exportPolicy } from './policy.js';
export * as host from './host.js';
export * as standard from './standard.js';
export * as routing from './routing.js';
import * as host from './host.js';

/**
 * The hosted voice-mail policy that applies to a user or contact: the granted
 * one, else the site's, else the tenant's global one.
 */
export function resolveHostedPolicy(granted, site) {
  return (
    (granted !== undefined ? host.lookupHostedVoicemailPolicy({ tag: 'named', val: granted }) : undefined) ??
    (site !== undefined ? host.lookupHostedVoicemailPolicy({ tag: 'site', val: site }) : undefined) ??
    host.lookupHostedVoicemailPolicy({ tag: 'global' })
  );
}
