// SIP and tel URIs, E.164 numbers and reason phrases, as the router reads them.

/** One URI parameter: `name` lowercased, `value` undefined for a flag. */
export class Param {
  /** @param {string} name @param {string | undefined} value */
  constructor(name, value) {
    this.name = name;
    this.value = value;
  }
}

const SCHEMES = ['sip', 'sips', 'tel'];
const UNRESERVED = /[A-Za-z0-9\-_.!~*'()]/;

/** Why a URI is refused. */
export class UriError extends Error {}

/** A SIP, SIPS or tel URI, parsed: the scheme and host lowercased, the user as written. */
export class Uri {
  /**
   * @param {Partial<Uri>} [fields]
   */
  constructor(fields = {}) {
    /** `sip`, `sips` or `tel` (empty for an unparsable URI). */
    this.scheme = fields.scheme ?? '';
    /** The user part (a tel URI's number), as written. */
    this.user = fields.user;
    /** The host, lowercased (empty for tel). */
    this.host = fields.host ?? '';
    /** The port, if given. */
    this.port = fields.port;
    /** The parameters, in order. */
    this.params = fields.params ?? [];
  }

  /** Parses a URI (no name-addr; see `parseUri`). Throws `UriError`. */
  static parse(text) {
    text = text.trim();
    for (const c of text) {
      const code = c.charCodeAt(0);
      if (code <= 0x20 || code === 0x7f || c === '<' || c === '>' || c === '"') {
        throw new UriError(`invalid character ${JSON.stringify(c)} in URI`);
      }
    }
    const colon = text.indexOf(':');
    if (colon < 0 || !/^[A-Za-z][A-Za-z0-9+\-.]*$/.test(text.slice(0, colon))) {
      throw new UriError('no URI scheme');
    }
    const scheme = text.slice(0, colon).toLowerCase();
    if (!SCHEMES.includes(scheme)) {
      throw new UriError(`unsupported URI scheme \`${scheme}\``);
    }
    let rest = text.slice(colon + 1);
    const cutHeaders = (t) => {
      const q = t.indexOf('?');
      return q < 0 ? t : t.slice(0, q);
    };
    if (scheme === 'tel') {
      rest = cutHeaders(rest);
      const semi = rest.indexOf(';');
      const number = semi < 0 ? rest : rest.slice(0, semi);
      if (number === '') {
        throw new UriError('no host');
      }
      return new Uri({ scheme, user: number, host: '', params: parseParams(semi < 0 ? '' : rest.slice(semi + 1)) });
    }
    const q = rest.indexOf('?');
    const beforeQuestion = q < 0 ? rest : rest.slice(0, q);
    let at = beforeQuestion.lastIndexOf('@');
    if (at < 0) {
      at = rest.lastIndexOf('@');
    }
    const userinfo = at < 0 ? undefined : rest.slice(0, at);
    const hostpart = cutHeaders(at < 0 ? rest : rest.slice(at + 1));
    const semi = hostpart.indexOf(';');
    const hostport = semi < 0 ? hostpart : hostpart.slice(0, semi);
    const [host, port] = splitHostPort(hostport);
    if (host === '') {
      throw new UriError('no host');
    }
    return new Uri({
      scheme,
      user: userinfo,
      host: host.toLowerCase(),
      port,
      params: parseParams(semi < 0 ? '' : hostpart.slice(semi + 1)),
    });
  }

  /** A parameter's value: undefined if absent, null for a flag, else the value. */
  param(name) {
    const p = this.params.find((p) => p.name.toLowerCase() === name.toLowerCase());
    return p === undefined ? undefined : (p.value ?? null);
  }

  /** Whether the parameter is present, with or without a value. */
  hasParam(name) {
    return this.param(name) !== undefined;
  }

  /** Whether this is a voice-mail URI (`opaque=app:voicemail`). */
  isVoicemail() {
    const v = this.param('opaque');
    return typeof v === 'string' && v.toLowerCase() === 'app:voicemail';
  }

  /** `scheme:user@host` lowercased, unreserved escapes decoded: the key a directory is searched by. */
  address() {
    let out = `${this.scheme}:`;
    if (this.user !== undefined) {
      out += unescape(this.user);
      if (this.host !== '') {
        out += '@';
      }
    }
    return (out + this.host).toLowerCase();
  }

  /** The user part as an E.164 number, if it is one. */
  number() {
    return this.user === undefined ? undefined : normalizeNumber(this.user);
  }

  /** The number and a tel URI's `ext`, as directory numbers are keyed. */
  numberKey() {
    if (this.user === undefined) {
      return undefined;
    }
    const ext = this.param('ext');
    if (this.scheme === 'tel' && typeof ext === 'string') {
      return numberKey(`${this.user};ext=${ext}`);
    }
    return numberKey(this.user);
  }

  /** Sets a parameter (replacing one of the same name) or adds it; `value` undefined/null for a flag. */
  setParam(name, value) {
    const p = this.params.find((p) => p.name.toLowerCase() === name.toLowerCase());
    if (p) {
      p.value = value ?? undefined;
    } else {
      this.params.push(new Param(name, value ?? undefined));
    }
    return this;
  }

  /** A copy. */
  clone() {
    return new Uri({ ...this, params: this.params.map((p) => new Param(p.name, p.value)) });
  }

  toString() {
    let out = `${this.scheme}:`;
    if (this.user !== undefined) {
      out += this.user;
      if (this.host !== '') {
        out += '@';
      }
    }
    out += this.host;
    if (this.port !== undefined) {
      out += `:${this.port}`;
    }
    for (const p of this.params) {
      out += `;${p.name}`;
      if (p.value !== undefined) {
        out += `=${p.value}`;
      }
    }
    return out;
  }
}

function parseParams(text) {
  const out = [];
  for (let piece of text.split(';')) {
    piece = piece.trim();
    if (piece === '') {
      continue;
    }
    const eq = piece.indexOf('=');
    if (eq < 0) {
      out.push(new Param(piece.toLowerCase(), undefined));
    } else {
      out.push(new Param(piece.slice(0, eq).trim().toLowerCase(), piece.slice(eq + 1).trim()));
    }
  }
  return out;
}

function isIpv6(inner) {
  // As the router: an IPv6 address, or the `x:::a.b.c.d` some clients send for `x::a.b.c.d`.
  const valid = (t) => {
    if (!t.includes(':') || !/^[0-9A-Fa-f:.]+$/.test(t)) {
      return false;
    }
    try {
      new URL(`http://[${t}]/`);
      return true;
    } catch {
      return false;
    }
  };
  if (valid(inner)) {
    return true;
  }
  const i = inner.indexOf(':::');
  if (i < 0) {
    return false;
  }
  const tail = inner.slice(i + 3);
  return !tail.includes(':') && /^\d{1,3}(\.\d{1,3}){3}$/.test(tail) && valid(`${inner.slice(0, i)}::${tail}`);
}

function splitHostPort(hostport) {
  let host;
  let port;
  if (hostport.startsWith('[')) {
    const end = hostport.indexOf(']');
    if (end < 0) {
      throw new UriError('unterminated `[`');
    }
    if (!isIpv6(hostport.slice(1, end))) {
      throw new UriError('invalid IPv6 reference');
    }
    const after = hostport.slice(end + 1);
    if (after.startsWith(':')) {
      port = after.slice(1);
    } else if (after !== '') {
      throw new UriError(`invalid port \`${after}\``);
    }
    host = hostport.slice(0, end + 1);
  } else {
    const colon = hostport.indexOf(':');
    if (colon < 0) {
      host = hostport;
    } else {
      port = hostport.slice(colon + 1);
      if (port.includes(':')) {
        throw new UriError('IPv6 address without brackets');
      }
      host = hostport.slice(0, colon);
    }
  }
  if (port === undefined) {
    return [host, undefined];
  }
  if (port === '' || !/^\d+$/.test(port) || Number(port) > 65535) {
    throw new UriError(`invalid port \`${port}\``);
  }
  return [host, Number(port)];
}

function unescape(user) {
  return user.replace(/%([0-9A-Fa-f]{2})/g, (whole, hex) => {
    const c = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(c) ? c : whole;
  });
}

/** The addr-spec of a name-addr (`"Bob" <sip:bob@x>;tag=1` → `sip:bob@x`), or the text itself. */
export function addrSpec(text) {
  text = text.trim();
  let quoted = false;
  let escaped = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (escaped) {
      escaped = false;
    } else if (c === '\\' && quoted) {
      escaped = true;
    } else if (c === '"') {
      quoted = !quoted;
    } else if (c === '<' && !quoted) {
      const close = text.indexOf('>', i);
      if (close < 0) {
        throw new UriError('unterminated `<`');
      }
      return text.slice(i + 1, close);
    }
  }
  return text;
}

/** Parses a URI or a name-addr; undefined when the router would refuse it. */
export function parseUri(text) {
  try {
    return Uri.parse(addrSpec(text));
  } catch (e) {
    if (e instanceof UriError) {
      return undefined;
    }
    throw e;
  }
}

const MAX_LEN = 16;

/** A number in E.164 form (`+14255550100`) from `+1 (425) 555-0100`, `tel:+1...;ext=1`, `0044...`; else undefined. */
export function normalizeNumber(number) {
  number = number.trim();
  if (number.slice(0, 4).toLowerCase() === 'tel:') {
    number = number.slice(4);
  }
  const semi = number.indexOf(';');
  if (semi >= 0) {
    number = number.slice(0, semi);
  }
  let digits;
  if (number.startsWith('+')) {
    digits = number.slice(1);
  } else if (number.startsWith('00')) {
    digits = number.slice(2);
  } else {
    return undefined;
  }
  let out = '+';
  for (const c of digits) {
    if (c === '0' && out.length === 1) {
      return undefined;
    } else if (c >= '0' && c <= '9') {
      if (out.length >= MAX_LEN) {
        return undefined;
      }
      out += c;
    } else if (!' -.()'.includes(c)) {
      return undefined;
    }
  }
  return out.length > 1 ? out : undefined;
}

/** The `ext` parameter of a number (`+14255550100;ext=101` → `101`), digits only. */
export function extension(number) {
  const semi = number.indexOf(';');
  if (semi < 0) {
    return undefined;
  }
  let value;
  for (const p of number.slice(semi + 1).split(';')) {
    const eq = p.indexOf('=');
    if (eq >= 0 && p.slice(0, eq).trim().toLowerCase() === 'ext') {
      value = p.slice(eq + 1).trim();
      break;
    }
  }
  if (value === undefined) {
    return undefined;
  }
  let out = '';
  for (const c of value) {
    if (c >= '0' && c <= '9') {
      out += c;
    } else if (!'-.()'.includes(c)) {
      return undefined;
    }
  }
  return out === '' ? undefined : out;
}

/** The E.164 number with its extension (`+14255550100;ext=101`), as directory numbers are keyed. */
export function numberKey(number) {
  const e164 = normalizeNumber(number);
  if (e164 === undefined) {
    return undefined;
  }
  const ext = extension(number);
  return ext === undefined ? e164 : `${e164};ext=${ext}`;
}

const PHRASES = {
  100: 'Trying', 180: 'Ringing', 181: 'Call Is Being Forwarded', 182: 'Queued', 183: 'Session Progress',
  200: 'OK', 202: 'Accepted', 300: 'Multiple Choices', 301: 'Moved Permanently', 302: 'Moved Temporarily',
  305: 'Use Proxy', 380: 'Alternative Service', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden',
  404: 'Not Found', 405: 'Method Not Allowed', 408: 'Request Timeout', 410: 'Gone',
  413: 'Request Entity Too Large', 414: 'Request-URI Too Long', 415: 'Unsupported Media Type',
  416: 'Unsupported URI Scheme', 420: 'Bad Extension', 421: 'Extension Required', 423: 'Interval Too Brief',
  480: 'Temporarily Unavailable', 481: 'Call/Transaction Does Not Exist', 482: 'Loop Detected',
  483: 'Too Many Hops', 484: 'Address Incomplete', 486: 'Busy Here', 487: 'Request Terminated',
  488: 'Not Acceptable Here', 491: 'Request Pending', 493: 'Undecipherable', 500: 'Server Internal Error',
  501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Server Time-out',
  505: 'Version Not Supported', 513: 'Message Too Large', 600: 'Busy Everywhere', 603: 'Decline',
  604: 'Does Not Exist Anywhere', 606: 'Not Acceptable',
};

const CLASSES = [undefined, 'Provisional', 'Success', 'Redirection', 'Request Failure', 'Server Failure'];

/** The standard reason phrase of a status code (RFC 3261), else its class's. */
export function reasonPhrase(code) {
  return PHRASES[code] ?? CLASSES[Math.floor(code / 100)] ?? 'Global Failure';
}
