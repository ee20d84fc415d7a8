// Example policy (TypeScript): after business hours, calls to the main number
// go to the auto attendant (a hosted Exchange UM contact); during business
// hours, and for every other call, the standard algorithm decides. The same
// policy as the Rust and Python ones beside it, decision for decision.
//
// `policy_config` is `key=value` pairs separated by `;`:
// `main=+14255550100; attendant=+14255550150; open=08:00-18:00; days=mon-fri`.
// Times are the tenant's local time (`utc_offset_minutes` in the router config).

import { Decision, exportPolicy, host, normalizeNumber, parseUri, routing } from '@exum-router/policy-sdk';
import type { Policy, Request } from '@exum-router/policy-sdk';

/** The parsed configuration. */
export interface Hours {
  /** The main number, E.164. */
  main: string;
  /** The auto attendant's number, E.164 (an Exchange UM contact of the tenant). */
  attendant: string;
  /** Opening and closing minute of the day (local time). */
  open: number;
  close: number;
  /** First and last open weekday, 0 = Monday. */
  days: [number, number];
}

let hours: Hours | undefined;

const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

/** A value or why it is refused. */
type Parsed<T> = { ok: T } | { error: string };

function minuteOfDay(text: string): Parsed<number> {
  const t = text.trim();
  const colon = t.indexOf(':');
  if (colon < 0) {
    return { error: `\`${text}\`: expected HH:MM` };
  }
  const [h, m] = [t.slice(0, colon), t.slice(colon + 1)];
  if (!/^\+?\d+$/.test(h)) {
    return { error: `\`${text}\`: bad hour` };
  }
  if (!/^\+?\d+$/.test(m)) {
    return { error: `\`${text}\`: bad minute` };
  }
  if (Number(h) > 24 || Number(m) > 59) {
    return { error: `\`${text}\` is not a time of day` };
  }
  return { ok: Number(h) * 60 + Number(m) };
}

function weekday(text: string): Parsed<number> {
  const i = WEEKDAYS.indexOf(text.trim().toLowerCase());
  return i < 0 ? { error: `\`${text}\` is not a weekday (mon..sun)` } : { ok: i };
}

/** Parses `policy_config`: the hours, or why they are refused. */
export function parse(config: string): Hours | string {
  let main: string | undefined;
  let attendant: string | undefined;
  let open: [number, number] | undefined;
  let days: [number, number] = [0, 4];
  for (const pair of config.split(';').map((p) => p.trim()).filter((p) => p !== '')) {
    const eq = pair.indexOf('=');
    if (eq < 0) {
      return `\`${pair}\`: expected key=value`;
    }
    const key = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    switch (key) {
      case 'main':
      case 'attendant': {
        const number = normalizeNumber(value);
        if (number === undefined) {
          return `${key}: \`${value}\` is not E.164`;
        }
        if (key === 'main') {
          main = number;
        } else {
          attendant = number;
        }
        break;
      }
      case 'open': {
        const dash = value.indexOf('-');
        if (dash < 0) {
          return 'open: expected HH:MM-HH:MM';
        }
        const a = minuteOfDay(value.slice(0, dash));
        if ('error' in a) return a.error;
        const b = minuteOfDay(value.slice(dash + 1));
        if ('error' in b) return b.error;
        open = [a.ok, b.ok];
        break;
      }
      case 'days': {
        const dash = value.indexOf('-');
        if (dash < 0) {
          return 'days: expected mon-fri';
        }
        const a = weekday(value.slice(0, dash));
        if ('error' in a) return a.error;
        const b = weekday(value.slice(dash + 1));
        if ('error' in b) return b.error;
        days = [a.ok, b.ok];
        break;
      }
      default:
        return `unknown key \`${key}\``;
    }
  }
  if (main === undefined) {
    return 'main is required';
  }
  if (attendant === undefined) {
    return 'attendant is required';
  }
  const [o, c] = open ?? [8 * 60, 18 * 60];
  return { main, attendant, open: o, close: c, days };
}

/** Whether `unixSeconds` at `offsetMinutes` from UTC is within business hours. */
export function isOpen(h: Hours, unixSeconds: number, offsetMinutes: number): boolean {
  const local = unixSeconds + offsetMinutes * 60;
  const daysSinceEpoch = Math.floor(local / 86400);
  const day = (((daysSinceEpoch + 3) % 7) + 7) % 7; // 1970-01-01 was a Thursday
  const minute = Math.floor((((local % 86400) + 86400) % 86400) / 60);
  return day >= h.days[0] && day <= h.days[1] && minute >= h.open && minute < h.close;
}

export const policy = {
  init(config: string): string | undefined {
    const parsed = parse(config);
    if (typeof parsed === 'string') {
      return parsed;
    }
    hours = parsed;
    return undefined;
  },

  route(req: Request): Decision {
    if (hours === undefined || req.requestUri.number() !== hours.main) {
      return Decision.standard();
    }
    const now = host.now();
    if (isOpen(hours, now.unixSeconds, now.utcOffsetMinutes)) {
      return Decision.standard();
    }
    const attendant = host.lookupContact(hours.attendant);
    if (attendant === undefined) {
      host.log('warn', 'the configured attendant is not an Exchange UM contact');
      return Decision.standard();
    }
    const aa = parseUri(attendant.sipAddress);
    if (aa === undefined) {
      return Decision.standard();
    }
    return routing.hostedForward(aa, attendant.hostedVoicemailPolicy, attendant.site);
  },
} satisfies Policy;

export const handler = exportPolicy(policy);
