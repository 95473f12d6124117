/**
 * Command lines of the tools, through node:util.parseArgs: strict (an unknown option is a usage
 * error), -h/--help added to every tool, one-line errors followed by the usage, exit status 2.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values<O extends Options> = ReturnType<typeof parseArgs<{ options: O; strict: true; allowPositionals: true }>>['values'];

export interface CliSpec<O extends Options> {
  /** the name errors start with, e.g. "stress-fds" */
  prog: string;
  /** the --help text; printed after a usage error too */
  usage: string;
  /** parseArgs options, without help (added here) */
  options: O;
  /** how many positional arguments are allowed (default none) */
  maxPositionals?: number;
  /** default process.argv.slice(2) */
  argv?: string[];
}

export interface Cli<O extends Options> {
  values: Values<O>;
  positionals: string[];
  /** print "prog: msg" and the usage on stderr, exit 2 */
  fail(msg: string): never;
  /** a whole number (digits only) between min and max; `raw` undefined gives `dflt` */
  wholeNumber(name: string, raw: string | undefined, dflt: number, min: number, max: number): number;
}

/** Parse the command line; --help prints the usage on stdout and exits 0. */
export function parseCli<const O extends Options>(spec: CliSpec<O>): Cli<O> {
  const fail = (msg: string): never => {
    process.stderr.write(`${spec.prog}: ${msg}\n${spec.usage}\n`);
    process.exit(2);
  };
  let parsed;
  try {
    parsed = parseArgs({
      args: spec.argv ?? process.argv.slice(2),
      options: { ...spec.options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: true,
    });
  } catch (e) {
    // parseArgs' messages run on with advice about '--'; the first sentence says it
    return fail(String((e as Error).message).split(/\n|\. /)[0]!);
  }
  if ((parsed.values as { help?: boolean }).help) {
    process.stdout.write(`${spec.usage}\n`);
    process.exit(0);
  }
  const max = spec.maxPositionals ?? 0;
  if (parsed.positionals.length > max) fail(`unexpected argument '${parsed.positionals[max]}'`);
  return {
    values: parsed.values as Values<O>,
    positionals: parsed.positionals,
    fail,
    wholeNumber(name, raw, dflt, min, max) {
      if (raw === undefined) return dflt;
      if (!/^\d+$/.test(raw)) fail(`${name} needs a whole number, got '${raw}'`);
      const n = Number(raw);
      if (n < min || n > max) fail(`${name} must be between ${min} and ${max}, got ${n}`);
      return n;
    },
  };
}
