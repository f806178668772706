/** What a call throws, for the tests of error paths. */
import { expect } from "bun:test";
import { ConfigError } from "../../lib/errors.ts";

/** Runs `run`, expects it to throw an instance of `type`, and returns that error. */
export function thrown<E extends Error>(run: () => unknown, type: abstract new (...args: never[]) => E): E {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(type);
    return error as E;
  }
  throw new Error(`expected a ${type.name}, but nothing was thrown`);
}

/** The problems of the ConfigError that `parse` throws, one line each. */
export function configProblems(parse: () => unknown): readonly string[] {
  return thrown(parse, ConfigError).problems;
}
