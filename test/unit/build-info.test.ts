import { describe, expect, test } from "bun:test";
import { resolveBuildInfo } from "../../lib/publish/build-info.ts";

const github = {
  GITHUB_SHA: "0123abcd",
  GITHUB_REF: "refs/heads/main",
  GITHUB_REPOSITORY: "acme/shop",
  GITHUB_RUN_ID: "987",
  GITHUB_RUN_ATTEMPT: "2",
  GITHUB_ACTOR: "octocat",
  GITHUB_SERVER_URL: "https://github.com",
};

describe("resolveBuildInfo()", () => {
  test("resolveBuildInfo() takes everything from GitHub Actions variables", () => {
    expect(resolveBuildInfo({ env: github, nowMs: 1_700_000_000_000 })).toEqual({
      id: "0123abcd-987-2",
      timestampMs: 1_700_000_000_000,
      commit: "0123abcd",
      ref: "refs/heads/main",
      repository: "acme/shop",
      runId: "987",
      runAttempt: "2",
      actor: "octocat",
      url: "https://github.com/acme/shop/actions/runs/987/attempts/2",
    });
  });

  test("resolveBuildInfo() lets explicit values win over GitHub's", () => {
    const build = resolveBuildInfo({
      env: github,
      nowMs: 1,
      overrides: { id: "release-7", timestampMs: 42, commit: "ffff", url: "https://ci.example/7" },
    });
    expect(build.id).toBe("release-7");
    expect(build.timestampMs).toBe(42);
    expect(build.commit).toBe("ffff");
    expect(build.url).toBe("https://ci.example/7");
  });

  test("resolveBuildInfo() names a build outside CI local-<timestamp>-<random>", () => {
    expect(resolveBuildInfo({ nowMs: 5, randomSuffix: () => "1a2b3c4d" })).toEqual({ id: "local-5-1a2b3c4d", timestampMs: 5 });
  });

  test("resolveBuildInfo() names a build with only a commit <commit>-<timestamp>", () => {
    expect(resolveBuildInfo({ overrides: { commit: "abc" }, nowMs: 5 })).toEqual({ id: "abc-5", timestampMs: 5, commit: "abc" });
  });

  test("resolveBuildInfo() treats empty variables as unset and makes no run URL without a run id", () => {
    const build = resolveBuildInfo({ env: { ...github, GITHUB_RUN_ID: "", GITHUB_ACTOR: "" }, nowMs: 5 });
    expect(build).toEqual({
      id: "0123abcd-5",
      timestampMs: 5,
      commit: "0123abcd",
      ref: "refs/heads/main",
      repository: "acme/shop",
      runAttempt: "2",
    });
  });

  test("resolveBuildInfo() defaults timestampMs to the current time", () => {
    const before = Date.now();
    const { timestampMs } = resolveBuildInfo();
    expect(timestampMs).toBeGreaterThanOrEqual(before);
    expect(timestampMs).toBeLessThanOrEqual(Date.now());
  });
});
