/** @module Interface exum:policy/handler@0.1.0 **/
/**
 * Called once per instance, before any other call, with the tenant's
 * `policy_config` string from the router configuration. An error refuses the
 * policy version.
 */
export function init(config: string): void;
/**
 * Decide where a new request goes. Called once per new request transaction,
 * never for retransmissions or in-dialog requests.
 */
export function route(req: Request): Decision;
/**
 * Every target of a `forward` decision failed: decide what happens next
 * (reroute, reject, ...). Called on the same policy version as `route`.
 */
export function onFailure(req: Request, failure: Failure): Decision;
export type Request = import('./exum-policy-types.js').Request;
export type Decision = import('./exum-policy-types.js').Decision;
export type Failure = import('./exum-policy-types.js').Failure;
