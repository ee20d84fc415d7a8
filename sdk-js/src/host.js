// The router's imports: the calling tenant's directory, health, clock and log.

import * as directory from 'exum:policy/directory@0.1.0';
import { targetHealthy as healthy } from 'exum:policy/health@0.1.0';
import { now as clockNow } from 'exum:policy/clock@0.1.0';
import { log as write } from 'exum:policy/log@0.1.0';

/** A user by SIP address or number; undefined if none. */
export const lookupUser = (address) => directory.lookupUser(address);
/** An Exchange UM contact by SIP address or number. */
export const lookupContact = (address) => directory.lookupContact(address);
/** A hosted voice-mail policy: `{tag: 'global'}`, `{tag: 'site', val}` or `{tag: 'named', val}`. */
export const lookupHostedVoicemailPolicy = (scope) => directory.lookupHostedVoicemailPolicy(scope);
/** A dial plan by phone-context or name. */
export const lookupDialPlan = (key) => directory.lookupDialPlan(key);
/** The on-premises dial plan of an Exchange UM contact. */
export const lookupContactDialPlan = (address) => directory.lookupContactDialPlan(address);
/** Voice-mail rerouting for a site (or the tenant's). */
export const lookupRerouting = (site) => directory.lookupRerouting(site);
/** The tenant's routing settings. */
export const settings = () => directory.settings();
/** The hosted voice-mail route for a grant and site, in one call. */
export const resolveHostedRoute = (granted, site) => directory.resolveHostedRoute(granted, site);
/** The UM servers of a dial plan not marked down: `{tag: 'key', val}` or `{tag: 'contact', val}`. */
export const healthyUmServers = (of) => directory.healthyUmServers(of);
/** Whether health probes consider a target reachable. */
export const targetHealthy = (uri) => healthy(uri);

/** The current time: `unixSeconds` (a number) and the tenant's `utcOffsetMinutes`. */
export function now() {
  const t = clockNow();
  return { unixSeconds: Number(t.unixSeconds), utcOffsetMinutes: t.utcOffsetMinutes };
}

/** Writes to the router's log: `trace`, `debug`, `info`, `warn` or `error`. */
export function log(level, message) {
  write(level, message);
}
