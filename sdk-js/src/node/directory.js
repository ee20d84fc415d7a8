// `exum:policy/directory` under Node: answered by the installed TestHost.
import { current } from '../testing.js';

export const lookupUser = (address) => current().findUser(address);
export const lookupContact = (address) => current().findContact(address);
export const lookupHostedVoicemailPolicy = (scope) => current().findHostedPolicy(scope);
export const lookupDialPlan = (key) => current().findDialPlan(key);
export const lookupContactDialPlan = (address) => current().findContactDialPlan(address);
export const lookupRerouting = (site) => current().findRerouting(site);
export const settings = () => ({ ...current().tenant });
export const resolveHostedRoute = (granted, site) => current().findHostedRoute(granted, site);
export const healthyUmServers = (of) => current().findHealthyUmServers(of);
