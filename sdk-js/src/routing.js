// Building blocks of the standard algorithm, for policies that route some calls their own way.

import * as host from './host.js';
import { Decision, Forward, Target } from './decision.js';

/** The ms-diagnostics of a call with no hosted voice-mail policy. */
export const NO_HOSTED_POLICY = [15031, 'No hosted voice mail policy'];
/** The ms-diagnostics of a call with no next hop to the hosting provider. */
export const NO_HOSTING_PROVIDER = [15033, 'No enabled hosting provider for hosted voice mail'];

/**
 * Hosted voice mail: `requestUri` (a `Uri`) rewritten with `ms-destination` and
 * `ms-organization` and sent to the tenant's edge, with whether that edge is up;
 * or the reject when no policy or next hop applies.
 * @returns {{decision: object, healthy: boolean}}
 */
export function hostedForwardAndHealth(requestUri, granted, site) {
  const noPolicy = () => Decision.rejectWithDiagnostics(480, 'Temporarily Unavailable', ...NO_HOSTED_POLICY);
  const route = host.resolveHostedRoute(granted, site);
  if (route === undefined || !route.destination) {
    return { decision: noPolicy(), healthy: false };
  }
  const ruri = requestUri.clone();
  ruri.port = undefined;
  ruri.params = ruri.params.filter((p) => p.name === 'opaque');
  ruri.setParam('ms-destination', route.destination);
  if (route.organization !== undefined) {
    ruri.setParam('ms-organization', route.organization);
  }
  if (route.nextHop === undefined) {
    return {
      decision: Decision.rejectWithDiagnostics(480, 'Temporarily Unavailable', ...NO_HOSTING_PROVIDER),
      healthy: false,
    };
  }
  const forward = Forward.to([new Target(route.nextHop)]).withRequestUri(ruri);
  return { decision: Decision.forward(forward), healthy: route.nextHopHealthy };
}

/** `hostedForwardAndHealth`'s decision alone. */
export function hostedForward(requestUri, granted, site) {
  return hostedForwardAndHealth(requestUri, granted, site).decision;
}

/** Replaces any Diversion with one naming the Request-URI's mailbox, unless the caller calls their own. */
export function withDiversion(req, forward) {
  return withDiversionTo(forward, req.isOwnMailboxCall() ? undefined : req.requestUriAddress);
}

/** Replaces any Diversion with one naming `mailbox` (none: Diversion removed only). */
export function withDiversionTo(forward, mailbox) {
  forward.removeHeader('Diversion');
  return mailbox === undefined ? forward : forward.addHeader('Diversion', `<${mailbox}>;reason=no-answer`);
}

/** Targets for UM servers, over TLS when `tls`. */
export function umServerTargets(servers, tls) {
  return servers.map((s) => {
    const t = new Target(s.uri).withTimeoutMs(s.timeoutMs);
    return tls ? t.withTransport('tls') : t;
  });
}

/** The healthy UM servers of a dial plan as targets. */
export function dialPlanTargets(plan, tls) {
  return umServerTargets(plan.servers.filter((s) => host.targetHealthy(s.uri)), tls);
}

/** A forward to a dial plan's healthy servers with Diversion; undefined when none is healthy. */
export function dialPlanForward(req, plan) {
  const targets = dialPlanTargets(plan, req.requestUri.scheme.toLowerCase() === 'sips');
  return targets.length === 0 ? undefined : withDiversion(req, Forward.to(targets));
}
