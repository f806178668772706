import { describe, expect, test } from "bun:test";
import { appFromRepository, resolvePublishApp } from "../../lib/publish/app.ts";
import { appNameProblem } from "../../lib/wire/app.ts";

describe("appFromRepository()", () => {
  test("appFromRepository() lowercases the repository name and makes each run of other characters one '-'", () => {
    expect(appFromRepository("acme/Shop_API")).toBe("shop-api");
    expect(appFromRepository("acme/My.Repo..Name")).toBe("my-repo-name");
    expect(appFromRepository("acme/shop")).toBe("shop");
  });

  test("appFromRepository() takes the part after the last '/', or the whole text without one", () => {
    expect(appFromRepository("plain")).toBe("plain");
    expect(appFromRepository("a/b/Web")).toBe("web");
  });

  test("appFromRepository() keeps '-' runs inside the name and trims them at either end", () => {
    expect(appFromRepository("acme/--a--b--")).toBe("a--b");
    expect(appFromRepository("acme/_shop_")).toBe("shop");
  });

  test("appFromRepository() cuts to 63 characters and trims a '-' the cut leaves at the end", () => {
    expect(appFromRepository(`acme/${"a".repeat(70)}`)).toBe("a".repeat(63));
    expect(appFromRepository(`acme/${"a".repeat(62)}_b`)).toBe("a".repeat(62));
  });

  test("appFromRepository() is undefined when no letter or digit is left", () => {
    expect(appFromRepository("acme/___")).toBeUndefined();
    expect(appFromRepository("acme/")).toBeUndefined();
  });

  test("appFromRepository() always gives a valid app name", () => {
    for (const repository of ["acme/Ünïcødé-Repo", "x/ÄÖÜ", "o/1.0", `o/${"-_".repeat(50)}z`, "o/A B\tC"]) {
      const app = appFromRepository(repository);
      if (app !== undefined) expect(appNameProblem(app)).toBeUndefined();
    }
    expect(appFromRepository("acme/Ünïcødé-Repo")).toBe("n-c-d--repo");
  });
});

describe("resolvePublishApp()", () => {
  test("resolvePublishApp() takes the explicit app with its origin over GITHUB_REPOSITORY", () => {
    expect(resolvePublishApp({ explicit: "shop", origin: "KUBE_PICO_CD_APP", env: { GITHUB_REPOSITORY: "acme/web" } })).toEqual({ name: "shop", from: "KUBE_PICO_CD_APP" });
  });

  test("resolvePublishApp() derives the app from GITHUB_REPOSITORY, else gives none", () => {
    expect(resolvePublishApp({ env: { GITHUB_REPOSITORY: "acme/Web_App" } })).toEqual({ name: "web-app", from: "GITHUB_REPOSITORY" });
    expect(resolvePublishApp({ env: {} })).toBeUndefined();
    expect(resolvePublishApp({ env: { GITHUB_REPOSITORY: "acme/___" } })).toBeUndefined();
  });
});
