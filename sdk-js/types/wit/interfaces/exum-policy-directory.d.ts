/** @module Interface exum:policy/directory@0.1.0 **/
/**
 * Find a user by SIP address (`sip:alice@contoso.com`, parameters ignored) or
 * by number (`+14255550100`, `tel:+14255550100`).
 */
export function lookupUser(address: string): User | undefined;
/**
 * Find an Exchange UM contact by SIP address or by number.
 */
export function lookupContact(address: string): UmContact | undefined;
/**
 * Look up one hosted voice-mail policy. Resolution for a user (granted, then
 * site, then global) is the caller's: the SDK's `resolve_hosted_policy` does it.
 */
export function lookupHostedVoicemailPolicy(scope: PolicyScope): HostedVoicemailPolicy | undefined;
/**
 * Find an on-premises dial plan by phone-context or by name.
 */
export function lookupDialPlan(key: string): DialPlan | undefined;
/**
 * The on-premises dial plan of an Exchange UM contact found by SIP address
 * or by number: a subscriber-access or auto-attendant number of that dial
 * plan's UM servers. None for a hosted contact (or no contact).
 */
export function lookupContactDialPlan(address: string): DialPlan | undefined;
/**
 * The voice-mail rerouting settings for a site (falling back to the tenant's),
 * or the tenant's when no site is given.
 */
export function lookupRerouting(site: string | undefined): Rerouting;
/**
 * The tenant's own routing settings.
 */
export function settings(): TenantSettings;
/**
 * Hosted voice mail for a user or contact granted the per-user policy
 * `granted`, in `site`, in one call: the hosted voice-mail policy that
 * applies (the granted one, else the site's, else the tenant's global one:
 * the first that exists, as the SDK's `resolve_hosted_policy`), and the
 * tenant's next hop with its health. None when no policy applies. What
 * `lookup-hosted-voicemail-policy`, `settings` and `target-healthy` would
 * answer, with one crossing of the sandbox instead of three to five.
 */
export function resolveHostedRoute(granted: string | undefined, site: string | undefined): HostedRoute | undefined;
/**
 * The UM servers of a dial plan that health probes have not marked down,
 * in the order to try them; an empty list when every one is down, none
 * when there is no such dial plan (or the contact is hosted). What
 * `lookup-dial-plan` (or `lookup-contact-dial-plan`) and `target-healthy`
 * for each server would answer, in one call.
 */
export function healthyUmServers(of: DialPlanOf): Array<UmServer> | undefined;
/**
 * The voice-mail setting of a user, derived from the directory flags: the hosted
 * flag wins over an on-premises EUM address.
 * # Variants
 * 
 * ## `"hosted"`
 * 
 * The user's mailbox is with a hosting provider.
 * ## `"on-premises"`
 * 
 * The user's mailbox is on an on-premises Exchange UM dial plan.
 * ## `"none"`
 * 
 * The user is not enabled for Unified Messaging.
 */
export type Voicemail = 'hosted' | 'on-premises' | 'none';
/**
 * A user of the tenant.
 */
export interface User {
  /**
   * The SIP address, `sip:alice@contoso.com`.
   */
  sipAddress: string,
  /**
   * The line URI, `tel:+14255550100;ext=100`, when assigned.
   */
  lineUri?: string,
  /**
   * The line URI's number in E.164 form, `+14255550100`, when assigned.
   */
  number?: string,
  /**
   * The user's site, when assigned.
   */
  site?: string,
  /**
   * The voice-mail setting.
   */
  voicemail: Voicemail,
  /**
   * The name of the hosted voice-mail policy granted to the user, if any.
   */
  hostedVoicemailPolicy?: string,
  /**
   * The on-premises UM address, `eum:alice@contoso.com;phone-context=DP1.contoso.com`.
   */
  eumAddress?: string,
}
/**
 * The kind of an Exchange UM contact.
 * # Variants
 * 
 * ## `"subscriber-access"`
 * 
 * Subscriber access: users call it to reach their own mailbox.
 * ## `"auto-attendant"`
 * 
 * Auto attendant: a menu for callers.
 */
export type ContactKind = 'subscriber-access' | 'auto-attendant';
/**
 * A directory contact for an Exchange UM number: hosted, or of an
 * on-premises dial plan (see `lookup-contact-dial-plan`).
 */
export interface UmContact {
  /**
   * The contact's SIP address.
   */
  sipAddress: string,
  /**
   * Its number in E.164 form.
   */
  number: string,
  /**
   * Subscriber access or auto attendant.
   */
  kind: ContactKind,
  /**
   * The site the contact belongs to, if any.
   */
  site?: string,
  /**
   * The hosted voice-mail policy granted to the contact, if any.
   */
  hostedVoicemailPolicy?: string,
}
/**
 * Which hosted voice-mail policy to look up.
 */
export type PolicyScope = PolicyScopeGlobal | PolicyScopeSite | PolicyScopeNamed;
/**
 * The tenant's global policy.
 */
export interface PolicyScopeGlobal {
  tag: 'global',
}
/**
 * The policy of the named site.
 */
export interface PolicyScopeSite {
  tag: 'site',
  val: string,
}
/**
 * The per-user policy of this name, as granted to users and contacts.
 */
export interface PolicyScopeNamed {
  tag: 'named',
  val: string,
}
/**
 * A hosted voice-mail policy.
 */
export interface HostedVoicemailPolicy {
  /**
   * The policy's name (`global`, `site:redmond` or the per-user name).
   */
  name: string,
  /**
   * The FQDN of the hosted UM service, `exap.um.outlook.com`; none if unset.
   */
  destination?: string,
  /**
   * The tenant routing FQDNs at the provider, first one first.
   */
  organizations: Array<string>,
}
/**
 * One UM server of a dial plan.
 */
export interface UmServer {
  /**
   * Its SIP URI, `sip:um1.contoso.com:5061;transport=tls`.
   */
  uri: string,
  /**
   * How long to wait for it before trying the next server, in milliseconds.
   */
  timeoutMs: number,
}
/**
 * An on-premises UM dial plan.
 */
export interface DialPlan {
  /**
   * The dial plan's name.
   */
  name: string,
  /**
   * Its phone-context, the value users' EUM addresses carry.
   */
  phoneContext: string,
  /**
   * Its UM servers, in the order to try them.
   */
  servers: Array<UmServer>,
}
/**
 * Voice-mail rerouting over the PSTN, used when no UM server can be reached.
 */
export interface Rerouting {
  /**
   * Whether rerouting is enabled.
   */
  enabled: boolean,
  /**
   * The auto-attendant number (deposits), E.164.
   */
  autoAttendant?: string,
  /**
   * The subscriber-access number (a user calling their own mailbox), E.164.
   */
  subscriberAccess?: string,
  /**
   * The PSTN gateway to send rerouted calls to, a SIP URI.
   */
  pstnGateway?: string,
}
/**
 * Routing settings of the tenant.
 */
export interface TenantSettings {
  /**
   * The tenant's id.
   */
  id: string,
  /**
   * The SIP domains the tenant owns.
   */
  domains: Array<string>,
  /**
   * The edge next hop for calls to a hosting provider, if configured.
   */
  edge?: string,
  /**
   * Where requests that are not voice-mail-bound go, if anywhere.
   */
  defaultNextHop?: string,
}
/**
 * Where hosted voice mail for a user or contact goes, as
 * `resolve-hosted-route` finds it.
 */
export interface HostedRoute {
  /**
   * The destination of the hosted voice-mail policy that applies (the
   * FQDN of the hosted UM service); none if that policy has none.
   */
  destination?: string,
  /**
   * That policy's first tenant routing FQDN, if any.
   */
  organization?: string,
  /**
   * The tenant's next hop towards its hosting provider (the edge), if
   * configured.
   */
  nextHop?: string,
  /**
   * Whether that next hop may be tried: health probes have not marked it
   * down (as `target-healthy` answers).
   */
  nextHopHealthy: boolean,
}
/**
 * Which dial plan's UM servers `healthy-um-servers` lists.
 */
export type DialPlanOf = DialPlanOfKey | DialPlanOfContact;
/**
 * The dial plan with this phone-context or name (as `lookup-dial-plan`).
 */
export interface DialPlanOfKey {
  tag: 'key',
  val: string,
}
/**
 * The dial plan of the Exchange UM contact with this SIP address or
 * number (as `lookup-contact-dial-plan`).
 */
export interface DialPlanOfContact {
  tag: 'contact',
  val: string,
}
