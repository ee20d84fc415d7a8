// URIs, numbers, the lazy Request, decision builders, exportPolicy and the test host.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Decision, Forward, Request, Target, exportPolicy, host, normalizeNumber, numberKey, extension, parseUri, reasonPhrase,
  resolveHostedPolicy,
} from '@exum-router/policy-sdk';
import { TestHost, invite } from '@exum-router/policy-sdk/testing';

test('parses a GRUU voice-mail URI', () => {
  const uri = parseUri('sip:Alice@Contoso.com;gruu;opaque=app:voicemail');
  assert.equal(uri.user, 'Alice');
  assert.equal(uri.host, 'contoso.com');
  assert.ok(uri.hasParam('gruu'));
  assert.ok(uri.isVoicemail());
  assert.equal(uri.address(), 'sip:alice@contoso.com');
  assert.equal(String(uri), 'sip:Alice@contoso.com;gruu;opaque=app:voicemail');
});

test('parses name-addr, IPv6 and tel; refuses what the router refuses', () => {
  const uri = parseUri('"Bob" <sip:bob@[2001:db8::1]:5070;transport=tcp>;tag=9');
  assert.equal(uri.host, '[2001:db8::1]');
  assert.equal(uri.port, 5070);
  assert.equal(uri.param('transport'), 'tcp');
  assert.equal(parseUri('tel:+14255550100;ext=100').number(), '+14255550100');
  assert.equal(parseUri('"Bob <B>" <sip:bob@contoso.com>;tag=1').address(), 'sip:bob@contoso.com');
  assert.equal(parseUri('sip:B%6Fb@contoso.com').address(), 'sip:bob@contoso.com');
  for (const bad of ['http://example.com', 'sip:alice@host:99999', '<sip:bob@contoso.com', 'sip:2001:db8::1',
    'sip:[2001:db8::1]junk', 'sip:a b@c', 'sip:', 'nothing']) {
    assert.equal(parseUri(bad), undefined, bad);
  }
  assert.equal(String(parseUri('sip:a@b;lr?subject=x')), 'sip:a@b;lr');
  assert.equal(parseUri('sip:x@[::ffff:1.2.3.4]').host, '[::ffff:1.2.3.4]');
});

test('normalizes numbers as the router does', () => {
  const cases = [
    ['+1 (425) 555-0100', '+14255550100'], ['tel:+14255550100;ext=100', '+14255550100'],
    ['TEL:+1.425.555.0100', '+14255550100'], ['0044 20 7946 0000', '+442079460000'],
    ['+123456789012345', '+123456789012345'], ['5550100', undefined], ['+1425555010x', undefined],
    ['+', undefined], ['00', undefined], ['+1234567890123456', undefined], ['+0 425 555 0100', undefined],
    ['sip:+14255550100@contoso.com', undefined], ['', undefined],
  ];
  for (const [input, want] of cases) {
    assert.equal(normalizeNumber(input), want, input);
  }
  assert.equal(numberKey('tel:+1 425 555 0100;ext=101'), '+14255550100;ext=101');
  assert.equal(numberKey('+14255550100;EXT=1-01;phone-context=x'), '+14255550100;ext=101');
  assert.equal(numberKey('+14255550100;ext='), '+14255550100');
  assert.equal(extension('+14255550100;ext=1a'), undefined);
  assert.deepEqual([reasonPhrase(483), reasonPhrase(499), reasonPhrase(699)], ['Too Many Hops', 'Request Failure', 'Global Failure']);
});

test('a request parses its fields from the spans, lazily', () => {
  const req = invite('sip:Alice@contoso.com;gruu;opaque=app:voicemail').from('sip:bob@contoso.com').build();
  assert.equal(req.method, 'INVITE');
  assert.equal(req.requestUri.address(), 'sip:alice@contoso.com');
  assert.ok(req.requestUri.isVoicemail());
  assert.equal(req.from.address(), 'sip:bob@contoso.com');
  assert.equal(req.fromTag, '1928301774');
  assert.equal(req.toTag, undefined);
  assert.equal(req.callId, 'a84b4c76e66710@pc33.example.com');
  assert.equal(req.requestUri, req.requestUri, 'parsed once');
});

test('header lookup matches compact forms and folded lines', () => {
  const req = invite('sip:a@b.c').header('k', '100rel').header('Subject', 'a\r\n  folded').build();
  assert.equal(req.header('Supported'), '100rel');
  assert.equal(req.header('subject'), 'a folded');
  assert.equal(req.header('Diversion'), undefined);
  assert.ok(req.header('f').startsWith('<sip:caller@example.com>'));
});

test('spans count bytes: a head with non-ASCII text still gives the right fields', () => {
  const req = invite('sip:bob@contoso.com').header('Subject', 'Grüße ☎').from('sip:zoë@contoso.com').build();
  assert.equal(req.from.user, 'zoë');
  assert.equal(req.callId, 'a84b4c76e66710@pc33.example.com');
  assert.equal(req.header('Subject'), 'Grüße ☎');
});

test('own mailbox calls compare the addresses', () => {
  const req = invite('sip:B%6Fb@Contoso.com;opaque=app:voicemail').from('sip:bob@CONTOSO.com:5060').build();
  assert.ok(req.isOwnMailboxCall());
  assert.ok(!invite('sip:bob@contoso.com').from('sips:bob@contoso.com').build().isOwnMailboxCall(), 'the scheme counts');
  const unparsable = invite('sip:bob@contoso.com').from('not a uri').build();
  assert.equal(unparsable.fromAddress, ':');
});

test('decision builders make the contract values', () => {
  const d = Decision.rejectWithDiagnostics(480, 'Temporarily Unavailable', 15030, 'Failed');
  assert.deepEqual(JSON.parse(JSON.stringify(d)), {
    tag: 'reject',
    val: { code: 480, reason: 'Temporarily Unavailable', headers: [{ name: 'ms-diagnostics', value: '15030;reason="Failed";appName="ExumRouting"' }] },
  });
  const f = Forward.to([new Target('sip:a@b').withTimeoutMs(100)]).removeHeader('Diversion').addHeader('X', 'y');
  assert.deepEqual([f.targets[0].timeoutMs, f.removeHeaders.length, f.addHeaders.length], [100, 1, 1]);
  assert.equal(Decision.forward(Forward.to([]).withRequestUri(parseUri('sip:x@y;a=b'))).val.requestUri, 'sip:x@y;a=b');
  assert.deepEqual(Decision.standard(), { tag: 'standard' });
  assert.deepEqual(Decision.redirect(302, ['sip:a@b']).val.contacts, ['sip:a@b']);
});

test('exportPolicy wraps the wire request and turns init errors into the error result', () => {
  const handler = exportPolicy({
    init(config) {
      if (config !== 'ok') {
        return `bad config: ${config}`;
      }
    },
    route(req) {
      assert.ok(req instanceof Request);
      return Decision.reject(403, req.requestUri.user);
    },
  });
  handler.init('ok');
  assert.throws(() => handler.init('nope'), (e) => e === 'bad config: nope');
  const thrower = exportPolicy({ init() { throw new Error('broken'); }, route: () => Decision.standard() });
  assert.throws(() => thrower.init(''), (e) => e === 'broken');
  assert.equal(handler.route(invite('sip:carol@contoso.com').wire()).val.reason, 'carol');
  assert.deepEqual(handler.onFailure(invite('sip:carol@contoso.com').wire(), { attempts: [] }), { tag: 'standard' });
  assert.throws(() => exportPolicy({}), /route/);
});

test('the test host answers each import from its directory', () => {
  new TestHost('contoso')
    .user({ sipAddress: 'sip:dave@contoso.com', number: '+14255550123' })
    .hostedUser('sip:alice@contoso.com', 'vip', 'redmond')
    .hostedPolicy({ tag: 'named', val: 'vip' }, 'vip.um.example', ['vip.example'])
    .hostedPolicy({ tag: 'global' }, 'exap.um.outlook.com', [])
    .contact('sip:aa@contoso.com', '+1 425 555 0150', 'auto-attendant')
    .edge('sip:edge.contoso.com')
    .down('sip:edge.contoso.com')
    .at(1000, 60)
    .install();
  assert.equal(host.lookupUser('SIPS:Alice@contoso.com;gruu').sipAddress, 'sip:alice@contoso.com');
  assert.equal(host.lookupUser('tel:+1-425-555-0123').sipAddress, 'sip:dave@contoso.com');
  assert.equal(host.lookupUser('sip:nobody@contoso.com'), undefined);
  assert.equal(host.lookupContact('+14255550150').sipAddress, 'sip:aa@contoso.com');
  assert.equal(resolveHostedPolicy('vip').name, 'vip');
  assert.equal(resolveHostedPolicy('other', 'nowhere').name, 'global');
  assert.deepEqual(host.resolveHostedRoute('vip'), {
    destination: 'vip.um.example', organization: 'vip.example', nextHop: 'sip:edge.contoso.com', nextHopHealthy: false,
  });
  assert.equal(host.targetHealthy('sip:edge.contoso.com'), false);
  assert.deepEqual(host.now(), { unixSeconds: 1000, utcOffsetMinutes: 60 });
  host.log('info', 'hello');
  assert.deepEqual(TestHost.logged(), [['info', 'hello']]);
  assert.equal(host.lookupRerouting().enabled, false);
});

test('the committed WIT types are those jco generates from sdk/wit/policy.wit', () => {
  const out = mkdtempSync(join(tmpdir(), 'exum-types-'));
  try {
    const root = new URL('..', import.meta.url).pathname;
    execFileSync(join(root, 'node_modules/.bin/jco'), ['types', '../sdk/wit/policy.wit', '-n', 'policy', '-o', out, '-q'], {
      cwd: root,
    });
    const files = (dir) => readdirSync(dir, { recursive: true }).filter((f) => f.endsWith('.d.ts')).sort();
    const committed = join(root, 'types/wit');
    assert.deepEqual(files(out), files(committed));
    for (const f of files(out)) {
      assert.equal(readFileSync(join(committed, f), 'utf8'), readFileSync(join(out, f), 'utf8'), `${f}: run npm run gen-types`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
