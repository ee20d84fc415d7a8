/** @module Interface exum:policy/types@0.1.0 **/
/**
 * One header field of a decision.
 */
export interface Header {
  /**
   * The header name (`Diversion`, `ms-diagnostics`).
   */
  name: string,
  /**
   * The header value, on one line.
   */
  value: string,
}
/**
 * A SIP transport.
 * # Variants
 * 
 * ## `"udp"`
 * 
 * SIP over UDP.
 * ## `"tcp"`
 * 
 * SIP over TCP.
 * ## `"tls"`
 * 
 * SIP over TLS (TCP).
 */
export type Transport = 'udp' | 'tcp' | 'tls';
/**
 * An IP address.
 */
export type IpAddress = IpAddressIpv4 | IpAddressIpv6;
/**
 * An IPv4 address, four octets.
 */
export interface IpAddressIpv4 {
  tag: 'ipv4',
  val: [number, number, number, number],
}
/**
 * An IPv6 address, eight 16-bit groups.
 */
export interface IpAddressIpv6 {
  tag: 'ipv6',
  val: [number, number, number, number, number, number, number, number],
}
/**
 * Where a request came from, as the router saw it.
 */
export interface Source {
  /**
   * The peer's IP address.
   */
  address: IpAddress,
  /**
   * The peer's port.
   */
  port: number,
  /**
   * The transport the request arrived on.
   */
  transport: Transport,
  /**
   * The peer's name from its TLS certificate, when the request came over
   * mutually authenticated TLS.
   */
  tlsPeerName?: string,
}
/**
 * A byte range of a request's `head`.
 */
export interface Span {
  /**
   * Offset of the first byte.
   */
  start: number,
  /**
   * Number of bytes.
   */
  len: number,
}
/**
 * The request a policy is asked to route: its head exactly as received, and
 * where the router found the fields it parsed. The SDK's `Request` gives
 * typed, lazily parsed access to all of it.
 */
export interface Request {
  /**
   * The request line and every header field as received, each line ended by
   * CRLF (or LF), without the empty line and the body. Header names may be
   * compact (`v`, `f`), and lines folded.
   */
  head: string,
  /**
   * The method.
   */
  method: Span,
  /**
   * The Request-URI.
   */
  requestUri: Span,
  /**
   * The URI of the From header (inside the angle brackets, if any).
   */
  fromUri: Span,
  /**
   * The From header's tag value, when present.
   */
  fromTag?: Span,
  /**
   * The URI of the To header.
   */
  toUri: Span,
  /**
   * The To header's tag value; present only for in-dialog requests.
   */
  toTag?: Span,
  /**
   * The Call-ID.
   */
  callId: Span,
  /**
   * The CSeq sequence number.
   */
  cseq: number,
  /**
   * Where the request came from.
   */
  source: Source,
}
/**
 * One next hop to try for a forwarded request.
 */
export interface Target {
  /**
   * The next hop as a SIP or SIPS URI (`sip:um1.contoso.com:5061;transport=tls`).
   * The request keeps its Request-URI (or the decision's rewrite) and is sent
   * to this address.
   */
  uri: string,
  /**
   * The transport to use; none means the one the URI names, else UDP.
   */
  transport?: Transport,
  /**
   * How long to wait for a final response before trying the next target,
   * in milliseconds; none means the router's default.
   */
  timeoutMs?: number,
}
/**
 * Forward the request: try the targets in order until one answers.
 */
export interface Forward {
  /**
   * The next hops, tried one after another (serial forking). At most 16.
   */
  targets: Array<Target>,
  /**
   * A new Request-URI for the forwarded request, or none to keep it.
   */
  requestUri?: string,
  /**
   * Header fields to add to the forwarded request (after the removals).
   */
  addHeaders: Array<Header>,
  /**
   * Names of header fields to remove from the forwarded request, all
   * occurrences, case-insensitively; compact forms match their long names.
   */
  removeHeaders: Array<string>,
}
/**
 * Answer the request with a final error response.
 */
export interface Reject {
  /**
   * The status code, 400 to 699.
   */
  code: number,
  /**
   * The reason phrase; empty means the standard phrase for the code.
   */
  reason: string,
  /**
   * Extra header fields for the response, such as `ms-diagnostics`.
   */
  headers: Array<Header>,
}
/**
 * Answer the request with a redirection (3xx) response.
 */
export interface Redirect {
  /**
   * The status code, 300 to 399.
   */
  code: number,
  /**
   * The Contact URIs to offer, at least one.
   */
  contacts: Array<string>,
  /**
   * Extra header fields for the response.
   */
  headers: Array<Header>,
}
/**
 * What to do with a request.
 */
export type Decision = DecisionForward | DecisionReject | DecisionRedirect | DecisionStandard;
/**
 * Send it on to one of the targets.
 */
export interface DecisionForward {
  tag: 'forward',
  val: Forward,
}
/**
 * Answer it with an error.
 */
export interface DecisionReject {
  tag: 'reject',
  val: Reject,
}
/**
 * Answer it with a redirection.
 */
export interface DecisionRedirect {
  tag: 'redirect',
  val: Redirect,
}
/**
 * Apply the router's standard Exchange UM routing algorithm instead.
 */
export interface DecisionStandard {
  tag: 'standard',
}
/**
 * How the attempt at one target ended.
 */
export type Outcome = OutcomeResponse | OutcomeTimeout | OutcomeUnreachable | OutcomeSkippedDown;
/**
 * The target answered with this final status code.
 */
export interface OutcomeResponse {
  tag: 'response',
  val: number,
}
/**
 * No final response before the target's timeout.
 */
export interface OutcomeTimeout {
  tag: 'timeout',
}
/**
 * The target could not be reached at all (transport error, no address).
 */
export interface OutcomeUnreachable {
  tag: 'unreachable',
}
/**
 * The target was not tried because health probes mark it down.
 */
export interface OutcomeSkippedDown {
  tag: 'skipped-down',
}
/**
 * One target tried for a forwarded request, and how it ended.
 */
export interface Attempt {
  /**
   * The target's URI, as the decision gave it (or as a 3xx Contact gave it).
   */
  target: string,
  /**
   * How it ended.
   */
  outcome: Outcome,
}
/**
 * Why a forward failed: every attempt, in the order made.
 */
export interface Failure {
  /**
   * The attempts, oldest first.
   */
  attempts: Array<Attempt>,
}
