// The request a policy routes: the head as received, its fields parsed on first use.

import { settings } from 'exum:policy/directory@0.1.0';
import { Uri, addrSpec, parseUri } from './uri.js';

const COMPACT = {
  a: 'Accept-Contact', b: 'Referred-By', c: 'Content-Type', d: 'Request-Disposition', e: 'Content-Encoding',
  f: 'From', i: 'Call-ID', j: 'Reject-Contact', k: 'Supported', l: 'Content-Length', m: 'Contact', o: 'Event',
  r: 'Refer-To', s: 'Subject', t: 'To', u: 'Allow-Events', v: 'Via', x: 'Session-Expires',
};

/** The long form of a compact header name (`v` → `Via`); other names unchanged. */
export function longHeaderName(name) {
  return name.length === 1 ? (COMPACT[name.toLowerCase()] ?? name) : name;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A request to route. Properties are computed on first use and kept: a policy
 * that reads only the Request-URI parses nothing else.
 */
export class Request {
  /** @param {import('../types/wit/interfaces/exum-policy-types.js').Request} wire */
  constructor(wire) {
    /** The request as the router passed it (the contract's record). */
    this.wire = wire;
    this._cache = {};
  }

  _once(key, compute) {
    const c = this._cache;
    if (!(key in c)) {
      c[key] = compute();
    }
    return c[key];
  }

  /** The text of a span: spans count bytes of UTF-8, JavaScript strings count UTF-16 units. */
  _span(span) {
    const head = this.wire.head;
    const ascii = this._once('ascii', () => !/[^\x00-\x7f]/.test(head));
    if (ascii) {
      return head.substr(span.start, span.len);
    }
    const bytes = this._once('bytes', () => encoder.encode(head));
    return decoder.decode(bytes.subarray(span.start, span.start + span.len));
  }

  /** The method (`INVITE`). */
  get method() {
    return this._once('method', () => this._span(this.wire.method));
  }

  /** The Request-URI as received. */
  get requestUriText() {
    return this._once('requestUriText', () => this._span(this.wire.requestUri));
  }

  /** The Request-URI, parsed (an empty `Uri` if unparsable). */
  get requestUri() {
    return this._once('requestUri', () => parseUri(this.requestUriText) ?? new Uri());
  }

  /** The From URI, parsed. */
  get from() {
    return this._once('from', () => parseUri(this._span(this.wire.fromUri)) ?? new Uri());
  }

  /** The From tag, if any. */
  get fromTag() {
    return this.wire.fromTag === undefined ? undefined : this._span(this.wire.fromTag);
  }

  /** The To URI, parsed. */
  get to() {
    return this._once('to', () => parseUri(this._span(this.wire.toUri)) ?? new Uri());
  }

  /** The To tag; present only in dialog. */
  get toTag() {
    return this.wire.toTag === undefined ? undefined : this._span(this.wire.toTag);
  }

  /** The Call-ID. */
  get callId() {
    return this._once('callId', () => this._span(this.wire.callId));
  }

  /** The CSeq number. */
  get cseq() {
    return this.wire.cseq;
  }

  /** Where the request came from. */
  get source() {
    return this.wire.source;
  }

  /** The request line and header fields as received. */
  get head() {
    return this.wire.head;
  }

  /** Every header field as `[name, value]`: compact names made long, folded lines joined. */
  get headers() {
    return this._once('headers', () => parseHeaders(this.wire.head));
  }

  /** The first value of a header field, by name (any case, compact forms too). */
  header(name) {
    const long = longHeaderName(name).toLowerCase();
    return this.headers.find(([n]) => n.toLowerCase() === long)?.[1];
  }

  /** Every value of a header field, in order. */
  headersNamed(name) {
    const long = longHeaderName(name).toLowerCase();
    return this.headers.filter(([n]) => n.toLowerCase() === long).map(([, v]) => v);
  }

  /**
   * Whether the call must not be diverted ([MS-SIPRE] 2.2.10): `Ms-Sensitivity:
   * normal-no-diversion` or `private-no-diversion`. Never rerouted to voice mail.
   */
  noDiversion() {
    const v = this.header('Ms-Sensitivity')?.trim().toLowerCase();
    return v === 'normal-no-diversion' || v === 'private-no-diversion';
  }

  /** Whether the caller calls their own mailbox: From's address is the Request-URI's. */
  isOwnMailboxCall() {
    return this.fromAddress === this.requestUriAddress;
  }

  /** The From URI's address (`sip:bob@contoso.com`). */
  get fromAddress() {
    return this._once('fromAddress', () => this.from.address());
  }

  /** The Request-URI's address. */
  get requestUriAddress() {
    return this._once('requestUriAddress', () => this.requestUri.address());
  }

  /** The calling tenant's id (asks the router). */
  tenant() {
    return settings().id;
  }
}

function parseHeaders(head) {
  const out = [];
  const lines = head.split('\n');
  for (let i = 1; i < lines.length; i++) {
    let line = lines[i];
    if (line.endsWith('\r')) {
      line = line.slice(0, -1);
    }
    if (line === '') {
      continue;
    }
    if (line[0] === ' ' || line[0] === '\t') {
      const last = out[out.length - 1];
      if (last) {
        last[1] += ` ${line.trim()}`;
      }
      continue;
    }
    const colon = line.indexOf(':');
    if (colon >= 0) {
      out.push([longHeaderName(line.slice(0, colon).trim()), line.slice(colon + 1).trim()]);
    }
  }
  return out;
}

export { addrSpec };
