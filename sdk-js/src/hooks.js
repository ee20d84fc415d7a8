// Node module hooks for policy tests: `exum:policy/<interface>@<version>` resolves
// to the test host's module for that interface, and `.ts` files are stripped of
// their types (rolldown's transform, from the policy's own node_modules).
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const INTERFACES = ['directory', 'health', 'clock', 'log', 'standard'];

export async function resolve(specifier, context, next) {
  const m = /^exum:policy\/([a-z-]+)(@[0-9.]+)?$/.exec(specifier);
  if (m) {
    if (!INTERFACES.includes(m[1])) {
      throw new Error(`${specifier}: not an interface of the exum:policy contract`);
    }
    return { url: new URL(`./node/${m[1]}.js`, import.meta.url).href, shortCircuit: true };
  }
  if (/^wasi:/.test(specifier)) {
    throw new Error(`${specifier}: a policy reaches WASI through the language's own library, not by import`);
  }
  try {
    return await next(specifier, context);
  } catch (e) {
    // The SDK itself, for a policy in this repository tested without `npm install`.
    const sdk = /^@exum-router\/policy-sdk(\/testing|\/register)?$/.exec(specifier);
    if (sdk) {
      const file = { undefined: 'index.js', '/testing': 'testing.js', '/register': 'register.js' }[sdk[1]];
      return { url: new URL(`./${file}`, import.meta.url).href, shortCircuit: true };
    }
    // `./policy.js` written in TypeScript as `./policy.ts`, as bundlers accept.
    if (specifier.startsWith('.') && specifier.endsWith('.js') && context.parentURL) {
      const ts = new URL(specifier.replace(/\.js$/, '.ts'), context.parentURL);
      try {
        return await next(ts.href, context);
      } catch {}
    }
    throw e;
  }
}

let transformSync;

async function transformer() {
  if (transformSync === undefined) {
    // The policy's own rolldown, else the SDK's.
    let path;
    for (const from of [pathToFileURL(`${process.cwd()}/`), import.meta.url]) {
      try {
        path = createRequire(from).resolve('rolldown/experimental');
        break;
      } catch {}
    }
    if (path === undefined) {
      throw new Error('TypeScript under Node needs rolldown in the policy\'s node_modules: run `npm install`');
    }
    ({ transformSync } = await import(pathToFileURL(path).href));
  }
  return transformSync;
}

export async function load(url, context, next) {
  if (url.startsWith('file:') && /\.m?ts$/.test(new URL(url).pathname)) {
    const { readFile } = await import('node:fs/promises');
    const source = await readFile(new URL(url), 'utf8');
    const transform = await transformer();
    const out = transform(new URL(url).pathname, source, { sourcemap: false });
    if (out.errors?.length) {
      throw new Error(`${url}: ${out.errors.map((e) => e.message).join('; ')}`);
    }
    return { format: 'module', source: out.code, shortCircuit: true };
  }
  return next(url, context);
}
