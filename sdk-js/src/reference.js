// The router's standard Exchange UM routing algorithm in JavaScript, over the
// `host` imports. The router answers `standard.route` natively; this copy is
// what the Node test host answers with, so a policy that composes with the
// standard decision is tested against the same algorithm.

import * as host from './host.js';
import * as routing from './routing.js';
import { Decision, Forward, Reject, Target, msDiagnostics } from './decision.js';
import { normalizeNumber, parseUri, reasonPhrase } from './uri.js';

/** The ms-diagnostics codes of the standard algorithm. */
export const diagnostics = {
  NOT_ENABLED: [15000, 'User is not enabled for Unified Messaging'],
  NOT_VOICEMAIL: [15002, 'Not a voice-mail call and no default next hop'],
  UNKNOWN_TARGET: [15004, 'Voice-mail target not found in the directory'],
  FAILED_TO_ROUTE: [15030, 'Failed to route to Exchange Server'],
  NO_HOSTED_POLICY: routing.NO_HOSTED_POLICY,
  NO_DIAL_PLAN: [15032, "No UM dial plan for the user's phone-context"],
};

function called(req) {
  const ruri = req.requestUri;
  const address = req.requestUriAddress;
  const numberKey = ruri.numberKey();
  const user = host.lookupUser(address) ?? (numberKey !== undefined ? host.lookupUser(numberKey) : undefined);
  if (user !== undefined) {
    return { user };
  }
  const number = ruri.number();
  const contact = host.lookupContact(address) ?? (number !== undefined ? host.lookupContact(number) : undefined);
  return contact !== undefined ? { contact } : {};
}

const isInvite = (req) => req.method.toUpperCase() === 'INVITE';

/** The standard decision for a new request. */
export function route(req) {
  if (!isInvite(req)) {
    return notVoicemail();
  }
  const voicemail = req.requestUri.isVoicemail();
  const who = called(req);
  if (voicemail && who.user) {
    return routeUser(req, who.user);
  }
  if (who.contact) {
    return routeContact(req, who.contact);
  }
  if (voicemail) {
    return reject(404, 'Not Found', diagnostics.UNKNOWN_TARGET);
  }
  return notVoicemail();
}

/** Whether the standard algorithm treats `req` as a voice-mail call. */
export function isVoicemailBound(req) {
  return isInvite(req) && (req.requestUri.isVoicemail() || called(req).contact !== undefined);
}

/** The standard decision when every target failed. */
export function onFailure(req, failure) {
  if (isVoicemailBound(req)) {
    return allTargetsFailed(req);
  }
  const code = bestResponse(failure) ?? 408;
  return { tag: 'reject', val: new Reject(code, reasonPhrase(code)) };
}

function bestResponse(failure) {
  let best;
  let bestRank;
  for (const a of failure.attempts) {
    if (a.outcome.tag === 'response' && a.outcome.val >= 400) {
      const code = a.outcome.val;
      const rank = code >= 600 ? 0 : Math.floor(code / 100);
      if (best === undefined || rank < bestRank) {
        best = code;
        bestRank = rank;
      }
    }
  }
  return best;
}

/** Voice-mail rerouting over the PSTN, or 480 when it is off or incomplete. */
export function allTargetsFailed(req) {
  // A call that may not be diverted (Ms-Sensitivity) is not rerouted either.
  if (req.noDiversion()) {
    return reject(480, 'Temporarily Unavailable', diagnostics.FAILED_TO_ROUTE);
  }
  const who = called(req);
  const site = who.user?.site ?? who.contact?.site;
  const retrieval = who.user
    ? ownCall(req, who.user)
    : who.contact
      ? who.contact.kind === 'subscriber-access'
      : req.isOwnMailboxCall();
  const rerouting = host.lookupRerouting(site);
  const number = retrieval ? rerouting.subscriberAccess : rerouting.autoAttendant;
  const gateway = rerouting.pstnGateway;
  if (!rerouting.enabled || gateway === undefined || number === undefined) {
    return reject(480, 'Temporarily Unavailable', diagnostics.FAILED_TO_ROUTE);
  }
  const gatewayUri = parseUri(gateway);
  const e164 = normalizeNumber(number);
  if (gatewayUri === undefined || e164 === undefined) {
    host.log('warn', 'voice-mail rerouting is enabled but its gateway or number is invalid');
    return reject(480, 'Temporarily Unavailable', diagnostics.FAILED_TO_ROUTE);
  }
  const ruri = gatewayUri.clone();
  ruri.user = e164;
  ruri.params = ruri.params.filter((p) => p.name !== 'transport' && p.name !== 'lr');
  ruri.setParam('user', 'phone');
  let forward = Forward.to([new Target(gateway)]).withRequestUri(ruri);
  forward = who.user ? routing.withDiversionTo(forward, mailboxOf(req, who.user)) : routing.withDiversion(req, forward);
  return Decision.forward(forward);
}

function ownCall(req, user) {
  return req.isOwnMailboxCall() || req.fromAddress.toLowerCase() === user.sipAddress.toLowerCase();
}

function mailboxOf(req, user) {
  return ownCall(req, user) ? undefined : user.sipAddress;
}

function routeUser(req, user) {
  switch (user.voicemail) {
    case 'hosted':
      return routeHostedUser(req, user);
    case 'on-premises':
      return routeOnPremises(req, user);
    default:
      return reject(480, 'Temporarily Unavailable', diagnostics.NOT_ENABLED);
  }
}

const overTls = (req) => req.requestUri.scheme.toLowerCase() === 'sips';

function routeContact(req, contact) {
  const servers = host.healthyUmServers({ tag: 'contact', val: contact.sipAddress });
  if (servers !== undefined) {
    const targets = routing.umServerTargets(servers, overTls(req));
    return targets.length === 0 ? allTargetsFailed(req) : Decision.forward(Forward.to(targets));
  }
  return routeHosted(req, req.requestUri.clone(), contact.hostedVoicemailPolicy, contact.site, null);
}

function routeHostedUser(req, user) {
  const mailbox = parseUri(user.sipAddress) ?? req.requestUri.clone();
  mailbox.params = [];
  if (req.requestUri.isVoicemail()) {
    mailbox.setParam('opaque', 'app:voicemail');
  }
  return routeHosted(req, mailbox, user.hostedVoicemailPolicy, user.site, { mailbox: mailboxOf(req, user) });
}

function routeHosted(req, requestUri, granted, site, diversion) {
  const { decision, healthy } = routing.hostedForwardAndHealth(requestUri, granted, site);
  if (decision.tag !== 'forward') {
    return decision;
  }
  if (!healthy) {
    return allTargetsFailed(req);
  }
  return diversion === null ? decision : Decision.forward(routing.withDiversionTo(decision.val, diversion.mailbox));
}

function routeOnPremises(req, user) {
  const phoneContext = user.eumAddress
    ?.split(';')
    .map((p) => p.trim())
    .find((p) => p.startsWith('phone-context='))
    ?.slice('phone-context='.length);
  const servers = phoneContext === undefined ? undefined : host.healthyUmServers({ tag: 'key', val: phoneContext });
  if (servers === undefined) {
    return reject(480, 'Temporarily Unavailable', diagnostics.NO_DIAL_PLAN);
  }
  const targets = routing.umServerTargets(servers, overTls(req));
  if (targets.length === 0) {
    return allTargetsFailed(req);
  }
  return Decision.forward(routing.withDiversionTo(Forward.to(targets), mailboxOf(req, user)));
}

function notVoicemail() {
  const nextHop = host.settings().defaultNextHop;
  return nextHop !== undefined
    ? Decision.forward(Forward.to([new Target(nextHop)]))
    : reject(404, 'Not Found', diagnostics.NOT_VOICEMAIL);
}

function reject(code, reason, [diag, diagReason]) {
  return { tag: 'reject', val: new Reject(code, reason).withHeader(msDiagnostics(diag, diagReason)) };
}
