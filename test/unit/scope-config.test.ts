import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { appsConfigSummary, isAppNameGlob, parseAppsConfig } from "../../lib/listener/apps-config.ts";
import { configProblems } from "../helpers/thrown.ts";

const FILE = "/etc/kube-pico-cd/apps/apps.yaml";
const KEY_A = "0123456789abcdef";
const KEY_B = "fedcba9876543210";

const parse = (text: string, keys: readonly string[] = [KEY_A, KEY_B]) => parseAppsConfig(text, FILE, keys);
const problems = (text: string, keys: readonly string[] = [KEY_A, KEY_B]) => configProblems(() => parse(text, keys));

describe("parseAppsConfig()", () => {
  test("parseAppsConfig() reads every field of an entry, and applies the defaults of the others", () => {
    const config = parse(`
apps:
  - name: shop
    namespaces: [shop, "shop-*"]
    defaultNamespace: shop
    kinds: ["apps/*", "core/*"]
    deniedKinds: ["core/Secret"]
    allowClusterScoped: true
    trustedKeys: ["${KEY_A}"]
  - name: "team-a-*"
`);
    expect(config).toEqual({
      source: FILE,
      apps: [
        { name: "shop", index: 0, namespaces: ["shop", "shop-*"], defaultNamespace: "shop", kinds: ["apps/*", "core/*"], deniedKinds: ["core/Secret"], allowClusterScoped: true, trustedKeys: [KEY_A] },
        { name: "team-a-*", index: 1, deniedKinds: [], allowClusterScoped: false },
      ],
      unknownApps: "refuse",
      defaults: { deniedKinds: [], allowClusterScoped: false },
    });
  });

  test("parseAppsConfig() reads unknownApps: allow with defaults, and a file of defaults alone", () => {
    expect(parse("unknownApps: allow\ndefaults:\n  namespaces: [sandbox]\n  defaultNamespace: sandbox\n")).toEqual({
      source: FILE,
      apps: [],
      unknownApps: "allow",
      defaults: { namespaces: ["sandbox"], defaultNamespace: "sandbox", deniedKinds: [], allowClusterScoped: false },
    });
  });

  test("parseAppsConfig() accepts a defaultNamespace that a namespace glob of the entry matches", () => {
    expect(parse("apps: [{ name: shop, namespaces: [\"shop-*\"], defaultNamespace: shop-prod }]").apps[0]?.defaultNamespace).toBe("shop-prod");
  });

  // One table row per rule: the file, and the exact problems it gives.
  const cases: { rule: string; text: string; keys?: readonly string[]; expected: readonly string[] }[] = [
    { rule: "an empty file", text: "# nothing\n", expected: [`${FILE}: is empty: write at least apps: [{ name: <app>, namespaces: [<namespace>] }] (docs/apps.md)`] },
    { rule: "a YAML syntax error, with line and column", text: "apps: [\n", expected: [`${FILE}:2:1: not valid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]`] },
    { rule: "a key given twice", text: "apps: [{ name: a }]\napps: []\n", expected: [`${FILE}:2:1: not valid YAML: Map keys must be unique`] },
    { rule: "several YAML documents", text: "apps: [{ name: a }]\n---\napps: []\n", expected: [`${FILE}:2:1: not valid YAML: the file holds more than one YAML document (a '---' line): keep one`] },
    { rule: "a file that is not a mapping", text: "- name: a\n", expected: [`${FILE}: must be a mapping with apps, unknownApps and defaults: current value is a list`] },
    {
      rule: "an unknown top-level field",
      text: "apps: [{ name: a }]\nunknownapp: allow\n",
      expected: [`${FILE}: unknown field "unknownapp" (did you mean unknownApps?); the fields of the file are apps, unknownApps, defaults`],
    },
    {
      rule: "an unknown field of an entry, named with its index and name",
      text: "apps:\n  - name: shop\n    namespace: shop\n",
      expected: [`${FILE}: apps[0] ("shop"): unknown field "namespace" (did you mean namespaces?); the fields of an entry are name, namespaces, defaultNamespace, kinds, deniedKinds, allowClusterScoped, trustedKeys`],
    },
    {
      rule: "name in defaults",
      text: "unknownApps: allow\ndefaults: { name: x }\n",
      expected: [`${FILE}: defaults: unknown field "name"; the fields of defaults are namespaces, defaultNamespace, kinds, deniedKinds, allowClusterScoped, trustedKeys`],
    },
    { rule: "an entry without a name", text: "apps: [{ namespaces: [a] }]\n", expected: [`${FILE}: apps[0]: name: is missing: write an app name or a glob over app names, e.g. name: shop or name: "team-a-*"`] },
    { rule: "an entry that is not a mapping", text: "apps: [shop]\n", expected: [`${FILE}: apps[0]: must be a mapping: current value is "shop"; write an entry such as { name: shop, namespaces: [shop] }`] },
    {
      rule: "a name that is not an app name",
      text: "apps: [{ name: Shop }]\n",
      expected: [`${FILE}: apps[0] ("Shop"): name: app name "Shop" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`],
    },
    {
      rule: "a glob with characters no app name has",
      text: 'apps: [{ name: "team_*" }]\n',
      expected: [`${FILE}: apps[0] ("team_*"): name: "team_*" is not a glob over app names (lowercase letters, digits, '-', '*' and '?', at most 63 characters)`],
    },
    {
      rule: "a name given twice",
      text: "apps: [{ name: shop }, { name: blog }, { name: shop }]\n",
      expected: [`${FILE}: apps[2] ("shop"): name: "shop" is already the name of apps[0], and only the first entry of a name is used: merge the two entries`],
    },
    {
      rule: "an empty list of namespaces",
      text: "apps: [{ name: shop, namespaces: [] }]\n",
      expected: [`${FILE}: apps[0] ("shop"): namespaces: is an empty list, which would allow nothing: leave namespaces out to allow any, or list what is allowed`],
    },
    {
      rule: "a field without a value",
      text: "apps:\n  - name: shop\n    kinds:\n",
      expected: [`${FILE}: apps[0] ("shop"): kinds: must be a list: current value is empty; write a list of kind patterns, e.g. kinds: ["apps/*", "core/ConfigMap"]`],
    },
    {
      rule: "a namespace glob with capitals",
      text: "apps: [{ name: shop, namespaces: [shop, Shop-*] }]\n",
      expected: [`${FILE}: apps[0] ("shop"): namespaces[1]: "Shop-*" is not a namespace glob (lowercase letters, digits, '-', '*', '?')`],
    },
    {
      rule: "a kind pattern that is not one",
      text: 'apps: [{ name: shop, deniedKinds: ["core/Secret", "a b"] }]\n',
      expected: [`${FILE}: apps[0] ("shop"): deniedKinds[1]: "a b" is not a kind pattern (Kind or group/Kind, e.g. Secret, core/Secret, rbac.authorization.k8s.io/*)`],
    },
    {
      rule: "a default namespace that is not a DNS label",
      text: "apps: [{ name: shop, defaultNamespace: shop-* }]\n",
      expected: [`${FILE}: apps[0] ("shop"): defaultNamespace: "shop-*" is not a namespace name (a DNS label: lowercase letters, digits and '-', at most 63 characters)`],
    },
    {
      rule: "a default namespace outside the entry's namespaces",
      text: 'apps: [{ name: shop, namespaces: [shop, "shop-*"], defaultNamespace: web }]\n',
      expected: [`${FILE}: apps[0] ("shop"): defaultNamespace: "web" is not in this entry's namespaces (shop, shop-*): add it to namespaces, or choose one of them`],
    },
    {
      rule: "allowClusterScoped that is not a boolean",
      text: 'apps: [{ name: shop, allowClusterScoped: "yes" }]\n',
      expected: [`${FILE}: apps[0] ("shop"): allowClusterScoped: must be true or false: current value is "yes"; write allowClusterScoped: true or allowClusterScoped: false`],
    },
    {
      rule: "a key id YAML reads as a number",
      text: "apps: [{ name: shop, trustedKeys: [1234567890123456] }]\n",
      expected: [
        `${FILE}: apps[0] ("shop"): trustedKeys[0]: must be text: current value is 1234567890123456 (YAML read it as a number: put it in quotes); write a list of key ids of the listener's trusted keys, quoted, e.g. trustedKeys: ["0123456789abcdef"]`,
      ],
    },
    {
      rule: "a key id that is not 16 hex digits",
      text: 'apps: [{ name: shop, trustedKeys: ["ABCDEF0123456789"] }]\n',
      expected: [`${FILE}: apps[0] ("shop"): trustedKeys[0]: "ABCDEF0123456789" is not a key id (16 lowercase hex digits, as 'publish keygen' prints and the listener logs at start-up)`],
    },
    {
      rule: "a key the listener does not trust",
      text: `apps: [{ name: shop, trustedKeys: ["${KEY_A}", "1111111111111111"] }]\n`,
      expected: [
        `${FILE}: apps[0] ("shop"): trustedKeys[1]: key 1111111111111111 is not among the listener's trusted keys; the listener trusts only ${KEY_A}, ${KEY_B}: add the key to --trusted-keys (KUBE_PICO_CD_TRUSTED_KEYS), or name one of those`,
      ],
    },
    {
      rule: "a key, when the listener trusts none",
      text: `apps: [{ name: shop, trustedKeys: ["${KEY_A}"] }]\n`,
      keys: [],
      expected: [
        `${FILE}: apps[0] ("shop"): trustedKeys[0]: key ${KEY_A} is not among the listener's trusted keys; the listener trusts no key (--trusted-keys, KUBE_PICO_CD_TRUSTED_KEYS, is not set), so no bundle could be signed by it: give the listener the key, or remove trustedKeys`,
      ],
    },
    {
      rule: "a key in defaults the listener does not trust",
      text: 'unknownApps: allow\ndefaults: { trustedKeys: ["1111111111111111"] }\n',
      keys: [KEY_A],
      expected: [`${FILE}: defaults: trustedKeys[0]: key 1111111111111111 is not among the listener's trusted keys; the listener trusts only ${KEY_A}: add the key to --trusted-keys (KUBE_PICO_CD_TRUSTED_KEYS), or name one of those`],
    },
    { rule: "unknownApps that is neither refuse nor allow", text: "apps: [{ name: a }]\nunknownApps: deny\n", expected: [`${FILE}: unknownApps: must be refuse or allow: current value is "deny"`] },
    {
      rule: "defaults that no app would run under",
      text: "apps: [{ name: a }]\ndefaults: { namespaces: [x] }\n",
      expected: [`${FILE}: defaults: is given, but unknownApps is refuse, so no app runs under it: write unknownApps: allow, or remove defaults`],
    },
    {
      rule: "no app and unknown apps refused",
      text: "apps: []\n",
      expected: [
        `${FILE}: apps: names no app and unknownApps is refuse, so every bundle would be refused: add an entry per app (apps: [{ name: shop, namespaces: [shop] }]), or write unknownApps: allow`,
      ],
    },
  ];
  for (const { rule, text, keys, expected } of cases) {
    test(`parseAppsConfig() refuses ${rule}`, () => {
      expect(problems(text, keys)).toEqual(expected);
    });
  }

  test("parseAppsConfig() reports every problem of the file at once, in file order", () => {
    expect(problems("apps:\n  - name: shop\n    namespaces: []\n    kinds: [\"x y\"]\n  - name: Blog\nunknownApps: no\n")).toEqual([
      `${FILE}: apps[0] ("shop"): namespaces: is an empty list, which would allow nothing: leave namespaces out to allow any, or list what is allowed`,
      `${FILE}: apps[0] ("shop"): kinds[0]: "x y" is not a kind pattern (Kind or group/Kind, e.g. Secret, core/Secret, rbac.authorization.k8s.io/*)`,
      `${FILE}: apps[1] ("Blog"): name: app name "Blog" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`,
      `${FILE}: unknownApps: must be refuse or allow: current value is "no"`,
    ]);
  });
});

describe("isAppNameGlob() and appsConfigSummary()", () => {
  test("isAppNameGlob() is true for a name with * or ?, false for an app name", () => {
    expect([isAppNameGlob("team-a-*"), isAppNameGlob("app-?"), isAppNameGlob("shop")]).toEqual([true, true, false]);
  });
  test("appsConfigSummary() lists the entries' names in file order and what happens to other apps", () => {
    expect(appsConfigSummary(parse("apps: [{ name: shop }, { name: \"team-*\" }]\nunknownApps: allow\n"))).toEqual({ apps: ["shop", "team-*"], unknownApps: "allow" });
  });
});

describe("the documented examples", () => {
  const EXAMPLE_KEYS = ["4f1c2a9be0d37c55", "0123456789abcdef", "fedcba9876543210"];
  const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
  /** The YAML blocks of docs/apps.md that are whole files (they start with `# apps.yaml`). */
  const documented = [...readFileSync(join(root, "docs", "apps.md"), "utf8").matchAll(/```yaml\n(# apps\.yaml\n[\s\S]*?)```/g)].map((match) => match[1]!);

  test("docs/apps.md shows three whole apps configuration files", () => {
    expect(documented).toHaveLength(3);
  });
  documented.forEach((text, index) => {
    test(`parseAppsConfig() accepts example ${index + 1} of docs/apps.md`, () => {
      expect(() => parseAppsConfig(text, "docs/apps.md", EXAMPLE_KEYS)).not.toThrow();
    });
  });
  test("parseAppsConfig() accepts deploy/apps-config/apps.yaml, and it is the platform example of docs/apps.md", () => {
    const deployed = parseAppsConfig(readFileSync(join(root, "deploy", "apps-config", "apps.yaml"), "utf8"), "apps.yaml", EXAMPLE_KEYS);
    expect({ ...deployed, source: "" }).toEqual({ ...parseAppsConfig(documented[1]!, "docs/apps.md", EXAMPLE_KEYS), source: "" });
  });
});
