// Tables whose entries are built on first read and then kept. koffi-libc.ts binds each C function
// this way: binding all of them when the module loads cost ~190 ms of the guest's boot under TCG,
// and a process (the container-init helper above all) uses only a few of them.

/**
 * A read-only object with one property per key of `specs`; reading a property for the first time
 * calls `build(spec, name)` and keeps the result as a plain value, so later reads cost nothing.
 * A build that throws keeps nothing: the next read tries again (and throws again, if it must).
 */
export function lazyTable<S extends Record<string, unknown>, V>(
  specs: S,
  build: (spec: S[keyof S], name: keyof S & string) => V,
): { readonly [K in keyof S]: V } {
  const table = {} as { [K in keyof S]: V };
  for (const name of Object.keys(specs) as (keyof S & string)[]) {
    Object.defineProperty(table, name, {
      configurable: true,
      enumerable: true,
      get() {
        const value = build(specs[name], name);
        Object.defineProperty(table, name, { value, enumerable: true, writable: false, configurable: false });
        return value;
      },
    });
  }
  return table;
}

/** A value made by `make` on the first call and returned as is after that. */
export function lazyValue<T>(make: () => T): () => T {
  let made = false;
  let value: T;
  return () => {
    if (!made) {
      value = make();
      made = true;
    }
    return value;
  };
}
