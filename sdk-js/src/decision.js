// Decisions and their builders: what a policy returns.

/** One next hop of a forward. */
export class Target {
  /** @param {string} uri the next hop, a SIP or SIPS URI */
  constructor(uri) {
    this.uri = uri;
    /** @type {'udp' | 'tcp' | 'tls' | undefined} */
    this.transport = undefined;
    /** @type {number | undefined} */
    this.timeoutMs = undefined;
  }

  /** Waits this long for a final response before the next target. */
  withTimeoutMs(timeoutMs) {
    this.timeoutMs = timeoutMs;
    return this;
  }

  /** Uses this transport. */
  withTransport(transport) {
    this.transport = transport;
    return this;
  }
}

/** Forward the request to targets, tried in order. */
export class Forward {
  constructor(targets = [], requestUri = undefined, addHeaders = [], removeHeaders = []) {
    /** @type {Array<{uri: string, transport?: string, timeoutMs?: number}>} */
    this.targets = targets;
    /** @type {string | undefined} */
    this.requestUri = requestUri;
    /** @type {Array<{name: string, value: string}>} */
    this.addHeaders = addHeaders;
    /** @type {string[]} */
    this.removeHeaders = removeHeaders;
  }

  /** A forward to these targets. */
  static to(targets) {
    return new Forward([...targets]);
  }

  /** A `Forward` with the fields of a forward record (one the standard import returned). */
  static from(record) {
    if (record instanceof Forward) {
      return record;
    }
    return new Forward([...record.targets], record.requestUri, [...record.addHeaders], [...record.removeHeaders]);
  }

  /** Tries this target before the others. */
  first(target) {
    this.targets.unshift(target);
    return this;
  }

  /** Tries this target after the others. */
  then(target) {
    this.targets.push(target);
    return this;
  }

  /** Rewrites the Request-URI (a string or a `Uri`). */
  withRequestUri(uri) {
    this.requestUri = String(uri);
    return this;
  }

  /** Adds a header field to the forwarded request. */
  addHeader(name, value) {
    this.addHeaders.push({ name, value });
    return this;
  }

  /** Removes every header field of this name from the forwarded request. */
  removeHeader(name) {
    this.removeHeaders.push(name);
    return this;
  }
}

/** Answer with an error response. */
export class Reject {
  constructor(code, reason = '', headers = []) {
    this.code = code;
    this.reason = reason;
    this.headers = headers;
  }

  /** Adds a header field to the response. */
  withHeader(header) {
    this.headers.push(header);
    return this;
  }
}

/** Answer with a 3xx redirection. */
export class Redirect {
  constructor(code, contacts, headers = []) {
    this.code = code;
    this.contacts = contacts;
    this.headers = headers;
  }
}

/** The `appName` of the `ms-diagnostics` Exchange UM routing writes, as Lync's. */
export const APP_NAME = 'ExumRouting';

/** An `ms-diagnostics` header field: `15004;reason="...";appName="ExumRouting"`. */
export function msDiagnostics(code, reason) {
  return { name: 'ms-diagnostics', value: `${code};reason="${reason}";appName="${APP_NAME}"` };
}

/** Builders of the contract's `decision` values (`{ tag, val }`). */
export const Decision = {
  /** Forward the request. */
  forward(forward) {
    return { tag: 'forward', val: forward };
  },
  /** Reject with a status code and reason phrase (empty: the standard phrase). */
  reject(code, reason = '') {
    return { tag: 'reject', val: new Reject(code, reason) };
  },
  /** Reject with an `ms-diagnostics` header. */
  rejectWithDiagnostics(code, reason, diagCode, diagReason) {
    return { tag: 'reject', val: new Reject(code, reason).withHeader(msDiagnostics(diagCode, diagReason)) };
  },
  /** Redirect to these contacts. */
  redirect(code, contacts) {
    return { tag: 'redirect', val: new Redirect(code, [...contacts]) };
  },
  /** Let the router's standard algorithm decide. */
  standard() {
    return { tag: 'standard' };
  },
  /** Applies `f` to a forward decision's `Forward`; any other decision unchanged. */
  mapForward(decision, f) {
    return decision.tag === 'forward' ? { tag: 'forward', val: f(Forward.from(decision.val)) } : decision;
  },
};
