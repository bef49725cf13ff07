/**
 * What can be checked of deploy/ without Docker or Kubernetes: every YAML file parses and holds the objects it should;
 * every Tessera container runs what the Dockerfile builds, with variables Tessera declares and values their own
 * parsers accept, and its whole environment loads as the program would load it (loadConfig, loadSidecarConfig); the
 * stop periods cover TESSERA_SHUTDOWN_DELAY + TESSERA_SHUTDOWN_GRACE; ports, probes, Services and the sidecars'
 * authority URL agree; secrets come from Secrets or the environment, never from the files; the callers example parses
 * with the callers-file parser and holds only hashes; Redis is durable.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { loadCallersFile } from "../../src/config/callers.js";
import { VARIABLES, loadConfig } from "../../src/config/config.js";
import { parseDuration } from "../../src/config/duration.js";
import { variablesOf, type Variable } from "../../src/config/variable.js";
import { SIDECAR_VARIABLES, loadSidecarConfig } from "../../src/sidecar/config.js";

/** Parsed YAML or JSON: the tests check the shapes. */
type Obj = Record<string, any>;

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const DEPLOY = join(ROOT, "deploy");
const CALLERS_EXAMPLE = join(DEPLOY, "callers.example.json");

const files = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)]));
const deployFiles = files(DEPLOY);
const yamlFiles = deployFiles.filter((f) => /\.ya?ml$/.test(f));
const manifestFiles = yamlFiles.filter((f) => f.startsWith(join(DEPLOY, "kubernetes")));
const composeFile = join(DEPLOY, "docker-compose.yml");

/**
 * Every document of a YAML file, as plain values. Kubernetes reads YAML 1.1 (sigs.k8s.io/yaml), where `yes`, `on` or
 * `0444` are not strings; Compose reads YAML 1.2 with `<<` merge keys. Any error or warning fails.
 */
function load(file: string): Obj[] {
  const text = readFileSync(file, "utf8");
  const options = file.startsWith(join(DEPLOY, "kubernetes")) ? ({ version: "1.1" } as const) : ({ merge: true } as const);
  return parseAllDocuments(text, options).map((doc) => {
    expect(doc.errors.map(String), relative(ROOT, file)).toEqual([]);
    expect(doc.warnings.map(String), relative(ROOT, file)).toEqual([]);
    return doc.toJS({ maxAliasCount: 100 }) as Obj;
  });
}

// --- what the Dockerfile says ----------------------------------------------------------------------------------

const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8").replace(/\\\n/g, " ");
const runtimeStage = dockerfile.slice(dockerfile.indexOf(" AS runtime"));
const jsonArray = (re: RegExp): string[] => JSON.parse(re.exec(runtimeStage)![1]!) as string[];
/** `CMD [...]`: the authority. */
const AUTHORITY_COMMAND = jsonArray(/^CMD (\[.*\])$/m);
/** The same image's other program (the Dockerfile's header names it). */
const SIDECAR_COMMAND = ["node", "dist/src/sidecar/main.js"];
/** `HEALTHCHECK ... CMD [...]`. */
const HEALTHCHECK_COMMAND = jsonArray(/^HEALTHCHECK .* CMD (\[.*\])$/m);
/** The runtime stage's ENV: what every container starts with (TESSERA_LISTEN=0.0.0.0:8080). */
const IMAGE_ENV = Object.fromEntries(
  [...runtimeStage.matchAll(/^ENV (.*)$/gm)].flatMap((m) => [...m[1]!.matchAll(/(\w+)=(\S+)/g)].map((kv) => [kv[1]!, kv[2]!])),
);

type Program = "authority" | "sidecar";
const DECLARED: Record<Program, Map<string, Variable<unknown>>> = {
  authority: new Map(variablesOf(VARIABLES).map((v) => [v.name, v])),
  sidecar: new Map(variablesOf(SIDECAR_VARIABLES).map((v) => [v.name, v])),
};
/** What a Tessera container may set besides TESSERA_* variables. */
const OTHER_VARIABLES = new Set(["NODE_OPTIONS"]);

function programOf(command: unknown): Program {
  if (JSON.stringify(command) === JSON.stringify(AUTHORITY_COMMAND)) return "authority";
  if (JSON.stringify(command) === JSON.stringify(SIDECAR_COMMAND)) return "sidecar";
  throw new Error(`${JSON.stringify(command)} is neither the Dockerfile's CMD nor the sidecar's command`);
}

/** One Tessera container, from either file, reduced to what the checks need. */
interface TesseraContainer {
  where: string;
  program: Program;
  /** Literal values; a value from a Secret or from Compose's interpolation is in `secret` instead. */
  env: Record<string, string>;
  secret: Set<string>;
  /** Where TESSERA_CALLERS_FILE's file comes from: its mount, read-only. */
  callersMount: { readOnly: boolean; source: string } | undefined;
  /** The stop period the container gets, in ms, and the listen port the outside is told. */
  stopMs: number;
  ports: number[];
}

/** The image's environment plus the container's, with the variables' defaults: what the program reads. */
const effective = (c: TesseraContainer): Record<string, string> => ({ ...IMAGE_ENV, ...c.env });
const read = (c: TesseraContainer, name: string): unknown => DECLARED[c.program].get(name)!.read(effective(c)[name]);
const listenPort = (c: TesseraContainer): number => (read(c, "TESSERA_LISTEN") as { port: number }).port;

// --- Compose -------------------------------------------------------------------------------------------------------

const compose = load(composeFile)[0]!;
const composeServices = compose.services as Record<string, Obj>;
const composeTessera: TesseraContainer[] = Object.entries(composeServices)
  .filter(([, s]) => s.build !== undefined)
  .map(([name, s]) => {
    const env: Record<string, string> = {};
    const secret = new Set<string>();
    for (const [k, v] of Object.entries((s.environment ?? {}) as Record<string, unknown>)) {
      if (typeof v === "string" && v.includes("${")) secret.add(k);
      else env[k] = String(v);
    }
    const mount = ((s.volumes ?? []) as Obj[]).find((m) => typeof m === "object" && m.target === env.TESSERA_CALLERS_FILE);
    return {
      where: `compose ${name}`,
      program: programOf(s.command),
      env,
      secret,
      callersMount: mount && { readOnly: mount.read_only === true && mount.type === "bind", source: mount.source },
      stopMs: parseDuration(s.stop_grace_period ?? "10s")!, // Compose's default is 10 s
      ports: ((s.ports ?? []) as string[]).map((p) => Number(p.split(":").at(-1))),
    };
  });

// --- Kubernetes ----------------------------------------------------------------------------------------------------

const objects = manifestFiles.flatMap((file) => load(file).map((o) => ({ file: relative(ROOT, file), ...o })) as Obj[]);
const ofKind = (kind: string) => objects.filter((o) => o.kind === kind);
const podSpecs = ofKind("Deployment").map((d) => ({ name: d.metadata.name as string, deployment: d, spec: d.spec.template.spec as Obj }));
const containersOf = (spec: Obj): Obj[] => [...(spec.initContainers ?? []), ...(spec.containers ?? [])];
const isTessera = (c: Obj) => Array.isArray(c.command) && c.command.some((w: string) => w.startsWith("dist/src/"));

const k8sTessera: (TesseraContainer & { pod: string; container: Obj; spec: Obj })[] = podSpecs.flatMap(({ name, spec }) =>
  containersOf(spec)
    .filter(isTessera)
    .map((c) => {
      const env: Record<string, string> = {};
      const secret = new Set<string>();
      for (const e of (c.env ?? []) as Obj[]) {
        if (e.valueFrom?.secretKeyRef) secret.add(e.name);
        else env[e.name] = e.value;
      }
      const callers = env.TESSERA_CALLERS_FILE;
      const mount = ((c.volumeMounts ?? []) as Obj[]).find((m) => callers?.startsWith(`${m.mountPath}/`));
      const volume = ((spec.volumes ?? []) as Obj[]).find((v) => v.name === mount?.name);
      return {
        where: `${name}/${c.name}`,
        pod: name,
        container: c,
        spec,
        program: programOf(c.command),
        env,
        secret,
        callersMount: mount && { readOnly: mount.readOnly === true && mount.subPath === undefined, source: `secret ${volume?.secret?.secretName}` },
        stopMs: (spec.terminationGracePeriodSeconds ?? 30) * 1000,
        ports: ((c.ports ?? []) as Obj[]).map((p) => p.containerPort as number),
      };
    }),
);

const allTessera = [...composeTessera, ...k8sTessera];

/**
 * The container's environment as its program would see it at start, with stand-ins for what Secrets (or Compose's
 * .env) supply, and the callers file at the example's path (the deployed file is a copy of it with the operator's
 * hashes).
 */
function startEnv(c: TesseraContainer): Record<string, string> {
  const env = effective(c);
  for (const name of c.secret) {
    env[name] = { TESSERA_REDIS_URL: "redis://redis.invalid:6379/0", TESSERA_AUTHORITY_API_KEY: "stand-in-key" }[name]!;
  }
  if (env.TESSERA_CALLERS_FILE !== undefined) env.TESSERA_CALLERS_FILE = CALLERS_EXAMPLE;
  return env;
}

// --- the checks ----------------------------------------------------------------------------------------------------

describe("deploy/: the files", () => {
  it("every YAML file parses (Compose as YAML 1.2 with merge keys, Kubernetes as YAML 1.1)", () => {
    expect(yamlFiles.map((f) => relative(DEPLOY, f)).sort()).toEqual([
      "docker-compose.yml",
      "kubernetes/deployment.yaml",
      "kubernetes/examples/app-with-sidecar.yaml",
      "kubernetes/hpa.yaml",
      "kubernetes/pdb.yaml",
      "kubernetes/service.yaml",
    ]);
    for (const f of yamlFiles) expect(load(f).length, f).toBeGreaterThan(0);
  });

  it("every Kubernetes object has apiVersion, kind and metadata.name, and the kinds are the expected ones", () => {
    for (const o of objects) {
      expect(o.apiVersion, o.file).toEqual(expect.any(String));
      expect(o.kind, o.file).toEqual(expect.any(String));
      expect(o.metadata?.name, o.file).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    }
    const kinds = objects.map((o) => `${o.file.replace("deploy/kubernetes/", "")}: ${o.apiVersion} ${o.kind} ${o.metadata.name}`).sort();
    expect(kinds).toEqual([
      "deployment.yaml: apps/v1 Deployment tessera",
      "examples/app-with-sidecar.yaml: apps/v1 Deployment example-app",
      "hpa.yaml: autoscaling/v2 HorizontalPodAutoscaler tessera",
      "pdb.yaml: policy/v1 PodDisruptionBudget tessera",
      "service.yaml: v1 Service tessera",
      "service.yaml: v1 Service tessera-headless",
    ]);
  });

  it("finds the Tessera containers: two authorities and a sidecar in Compose, the authority and a sidecar in Kubernetes", () => {
    expect(composeTessera.map((c) => `${c.where}: ${c.program}`)).toEqual([
      "compose tessera-1: authority",
      "compose tessera-2: authority",
      "compose sidecar: sidecar",
    ]);
    expect(k8sTessera.map((c) => `${c.where}: ${c.program}`)).toEqual(["tessera/tessera: authority", "example-app/tessera-sidecar: sidecar"]);
  });

  it("every TESSERA_* name written anywhere in deploy/ is a variable Tessera declares (or a Kubernetes service link, named as such)", () => {
    const declared = new Set([...DECLARED.authority.keys(), ...DECLARED.sidecar.keys()]);
    // The variables Kubernetes would put in pods for each Service (enableServiceLinks): comments name them.
    const links = new Set(
      ofKind("Service").flatMap((s) => {
        const n = (s.metadata.name as string).toUpperCase().replace(/-/g, "_");
        return [`${n}_SERVICE_HOST`, `${n}_SERVICE_PORT`, `${n}_PORT`, ...(s.spec.ports as Obj[]).map((p) => `${n}_SERVICE_PORT_${p.name.toUpperCase()}`)];
      }),
    );
    for (const f of deployFiles) {
      for (const [name] of readFileSync(f, "utf8").matchAll(/\bTESSERA_[A-Z0-9_]*[A-Z0-9]/g)) {
        expect(declared.has(name) || links.has(name), `${relative(ROOT, f)}: ${name} is not a declared variable`).toBe(true);
      }
    }
  });
});

describe("deploy/: what each Tessera container runs", () => {
  it("the Dockerfile's commands: its CMD for the authority, node dist/src/sidecar/main.js for the sidecar, built from sources that exist", () => {
    expect(AUTHORITY_COMMAND).toEqual(["node", "dist/src/main.js"]);
    expect(HEALTHCHECK_COMMAND).toEqual(["node", "dist/src/healthcheck.js"]);
    expect(dockerfile).toContain("`node dist/src/sidecar/main.js`");
    for (const cmd of [AUTHORITY_COMMAND, SIDECAR_COMMAND, HEALTHCHECK_COMMAND]) {
      const source = cmd[1]!.replace(/^dist\//, "").replace(/\.js$/, ".ts");
      expect(existsSync(join(ROOT, source)), `${source} does not exist`).toBe(true);
    }
    for (const [name, s] of Object.entries(composeServices).filter(([, s]) => s.build !== undefined)) {
      expect({ context: s.build.context, image: s.image }, name).toEqual({ context: "..", image: "tessera:local" });
    }
  });

  it("health checks and exec probes run the image's health check (Compose: the HEALTHCHECK itself)", () => {
    for (const [name, s] of Object.entries(composeServices).filter(([, s]) => s.build !== undefined)) {
      expect(s.healthcheck?.test, name).toEqual(["CMD", ...HEALTHCHECK_COMMAND]);
    }
    for (const c of k8sTessera) {
      for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) {
        const exec = c.container[probe]?.exec?.command;
        if (exec !== undefined) expect([HEALTHCHECK_COMMAND, [...HEALTHCHECK_COMMAND, "--ready"]], `${c.where} ${probe}`).toContainEqual(exec);
      }
    }
  });

  it("every variable is one its program declares, and every literal value passes that variable's own parser", () => {
    for (const c of allTessera) {
      for (const name of [...Object.keys(c.env), ...c.secret]) {
        if (OTHER_VARIABLES.has(name)) continue;
        expect(DECLARED[c.program].has(name), `${c.where}: ${name} is not a variable of the ${c.program}`).toBe(true);
      }
      for (const [name, value] of Object.entries(c.env)) {
        if (OTHER_VARIABLES.has(name)) continue;
        expect(typeof value, `${c.where} ${name}`).toBe("string");
        expect(() => DECLARED[c.program].get(name)!.read(value), `${c.where} ${name}=${value}`).not.toThrow();
      }
    }
  });

  it("the whole environment loads as the program loads it at start (loadConfig, loadSidecarConfig)", () => {
    for (const c of allTessera) {
      const load = c.program === "authority" ? loadConfig : loadSidecarConfig;
      expect(() => load(startEnv(c)), c.where).not.toThrow();
    }
  });

  it("Kubernetes env values are strings (a YAML 1.1 number or boolean there is refused by the API server)", () => {
    for (const { spec, name } of podSpecs) {
      for (const c of containersOf(spec)) {
        for (const e of (c.env ?? []) as Obj[]) {
          if (e.valueFrom === undefined) expect(typeof e.value, `${name}/${c.name} ${e.name}`).toBe("string");
        }
      }
    }
  });

  it("secrets come from Secrets (Kubernetes) or from the environment (Compose's .env), never from the files", () => {
    for (const c of k8sTessera) {
      for (const name of ["TESSERA_REDIS_URL", "TESSERA_AUTHORITY_API_KEY"]) {
        if (name in c.env || c.secret.has(name)) expect(c.secret.has(name), `${c.where}: ${name} must come from a Secret`).toBe(true);
      }
    }
    for (const c of composeTessera.filter((c) => c.program === "sidecar")) {
      expect([...c.secret]).toEqual(["TESSERA_AUTHORITY_API_KEY"]);
      expect(composeServices.sidecar!.environment.TESSERA_AUTHORITY_API_KEY).toMatch(/^\$\{[A-Z_]+:\?[^}]+\}$/);
    }
    for (const c of composeTessera) {
      // No password in a Redis URL written in the file.
      if (c.env.TESSERA_REDIS_URL !== undefined) expect(new URL(c.env.TESSERA_REDIS_URL).password).toBe("");
    }
  });

  it("the callers file is mounted read-only where TESSERA_CALLERS_FILE says (Kubernetes: the whole Secret, no subPath)", () => {
    for (const c of allTessera.filter((c) => c.env.TESSERA_CALLERS_FILE !== undefined)) {
      expect(c.callersMount, c.where).toEqual({ readOnly: true, source: expect.any(String) });
    }
    expect(composeTessera.map((c) => c.callersMount?.source)).toEqual(["./callers.json", "./callers.json", "./callers.json"]);
    expect(k8sTessera.find((c) => c.program === "authority")!.callersMount!.source).toBe("secret tessera-callers");
  });

  it("the authority and its sidecars have the same issuer", () => {
    for (const group of [composeTessera, k8sTessera]) {
      expect(new Set(group.map((c) => read(c, "TESSERA_ISSUER"))).size).toBe(1);
      expect(group[0]!.env.TESSERA_ISSUER).toMatch(/^https:\/\//);
    }
  });
});

describe("deploy/: shutdown", () => {
  const needMs = (c: TesseraContainer) => (read(c, "TESSERA_SHUTDOWN_DELAY") as number) + (read(c, "TESSERA_SHUTDOWN_GRACE") as number);

  it("Compose's stop_grace_period and Kubernetes' terminationGracePeriodSeconds cover delay + grace + a 5 s margin", () => {
    for (const c of allTessera) {
      expect(c.stopMs, `${c.where}: a stop period of ${c.stopMs} ms for ${needMs(c)} ms of delay + grace`).toBeGreaterThanOrEqual(needMs(c) + 5_000);
    }
  });

  it("an authority behind a Service or a balancer waits before it drains: Kubernetes 10 s (docs/operations.md), no preStop hook", () => {
    for (const c of k8sTessera.filter((c) => c.program === "authority")) {
      expect(read(c, "TESSERA_SHUTDOWN_DELAY")).toBe(10_000);
      expect(c.container.lifecycle?.preStop).toBeUndefined();
    }
    for (const c of composeTessera.filter((c) => c.program === "authority")) expect(read(c, "TESSERA_SHUTDOWN_DELAY")).toBeGreaterThan(0);
  });
});

describe("deploy/: ports, probes, Services and the sidecars' authority", () => {
  it("Compose publishes each container's TESSERA_LISTEN port, on the host's loopback", () => {
    for (const c of composeTessera) expect(c.ports, c.where).toEqual([listenPort(c)]);
    for (const s of Object.values(composeServices)) for (const p of (s.ports ?? []) as string[]) expect(p).toMatch(/^127\.0\.0\.1:\d+:\d+$/);
  });

  it("Kubernetes: the authority's port `grpc` is TESSERA_LISTEN's; HTTP probes on it, /healthz for liveness, /readyz for readiness", () => {
    const authority = k8sTessera.find((c) => c.program === "authority")!;
    expect(authority.container.ports).toEqual([{ name: "grpc", containerPort: listenPort(authority), protocol: "TCP" }]);
    expect(read(authority, "TESSERA_LISTEN")).toEqual({ host: "0.0.0.0", port: 8080 });
    expect(authority.container.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "grpc" });
    expect(authority.container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "grpc" });
    expect(authority.container.startupProbe.httpGet).toEqual({ path: "/healthz", port: "grpc" });
  });

  it("Kubernetes: a sidecar listens on loopback only, and is probed by exec (nothing from outside the pod reaches it)", () => {
    for (const c of k8sTessera.filter((c) => c.program === "sidecar")) {
      expect((read(c, "TESSERA_LISTEN") as { host: string }).host).toBe("127.0.0.1");
      expect(c.container.ports).toBeUndefined();
      expect(c.container.livenessProbe.exec).toBeDefined();
      expect(c.container.startupProbe.exec.command).toEqual([...HEALTHCHECK_COMMAND, "--ready"]);
      expect(c.container.restartPolicy).toBe("Always"); // a native sidecar: up before the app, down after it
    }
  });

  it("the Services select the authority's pods, name their port grpc, and say h2c", () => {
    const labels = podSpecs.find((p) => p.name === "tessera")!.deployment.spec.template.metadata.labels as Obj;
    for (const s of ofKind("Service")) {
      expect(labels).toMatchObject(s.spec.selector);
      expect(s.spec.ports).toEqual([{ name: "grpc", port: 8080, targetPort: "grpc", protocol: "TCP", appProtocol: "kubernetes.io/h2c" }]);
    }
  });

  it("a sidecar's TESSERA_AUTHORITY_URL names an authority of its own file, at that authority's port", () => {
    for (const c of composeTessera.filter((c) => c.program === "sidecar")) {
      const url = read(c, "TESSERA_AUTHORITY_URL") as URL;
      const target = composeTessera.find((a) => a.where === `compose ${url.hostname}`);
      expect(target?.program, `${c.where}: ${url.hostname} is not an authority of the file`).toBe("authority");
      expect(Number(url.port)).toBe(listenPort(target!));
    }
    for (const c of k8sTessera.filter((c) => c.program === "sidecar")) {
      const url = read(c, "TESSERA_AUTHORITY_URL") as URL;
      const service = ofKind("Service").find((s) => s.metadata.name === url.hostname.split(".")[0]);
      expect(service, `${c.where}: ${url.hostname} is not a Service of deploy/kubernetes`).toBeDefined();
      expect(service!.spec.ports[0].port).toBe(Number(url.port));
      expect(url.protocol).toBe("http:"); // h2c, as the Service says
    }
  });
});

describe("deploy/: Kubernetes objects", () => {
  it("the authority: 2+ replicas, a PodDisruptionBudget of minAvailable 1, an autoscaler on CPU from 2 pods up", () => {
    const deployment = podSpecs.find((p) => p.name === "tessera")!.deployment;
    const labels = deployment.spec.template.metadata.labels as Obj;
    expect(deployment.spec.replicas).toBeGreaterThanOrEqual(2);
    expect(labels).toMatchObject(deployment.spec.selector.matchLabels);
    const [pdb] = ofKind("PodDisruptionBudget");
    expect(pdb!.spec.minAvailable).toBe(1);
    expect(labels).toMatchObject(pdb!.spec.selector.matchLabels);
    const [hpa] = ofKind("HorizontalPodAutoscaler");
    expect(hpa!.spec.scaleTargetRef).toEqual({ apiVersion: "apps/v1", kind: "Deployment", name: "tessera" });
    expect(hpa!.spec.minReplicas).toBeGreaterThanOrEqual(2);
    expect(hpa!.spec.maxReplicas).toBeGreaterThan(hpa!.spec.minReplicas);
    expect(hpa!.spec.metrics).toEqual([{ type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: expect.any(Number) } } }]);
    // Utilization is a share of the request: the container must request CPU.
    expect(k8sTessera.find((c) => c.program === "authority")!.container.resources.requests.cpu).toBeDefined();
  });

  it("every Tessera container: non-root uid 1000 (the image's node user), read-only root, no privilege escalation, no capabilities, limits", () => {
    expect(dockerfile).toMatch(/^USER node$/m);
    for (const c of k8sTessera) {
      expect(c.container.securityContext, c.where).toEqual({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        runAsNonRoot: true,
        runAsUser: 1000,
        runAsGroup: 1000,
        capabilities: { drop: ["ALL"] },
      });
      expect(c.container.resources.requests, c.where).toEqual({ cpu: expect.any(String), memory: expect.any(String) });
      expect(c.container.resources.limits.memory, c.where).toEqual(expect.any(String));
      expect(c.spec.securityContext.runAsNonRoot, c.pod).toBe(true);
      expect(c.spec.automountServiceAccountToken, c.pod).toBe(false);
      // A Service named `tessera` would otherwise hand every pod TESSERA_SERVICE_HOST and its kin: unknown variables.
      expect(c.spec.enableServiceLinks, `${c.pod}: enableServiceLinks`).toBe(false);
    }
    for (const [name, s] of Object.entries(composeServices).filter(([, s]) => s.build !== undefined)) {
      expect({ read_only: s.read_only, cap_drop: s.cap_drop, security_opt: s.security_opt }, name).toEqual({
        read_only: true,
        cap_drop: ["ALL"],
        security_opt: ["no-new-privileges:true"],
      });
    }
  });
});

describe("deploy/: Redis and the callers example", () => {
  it("Compose's Redis is durable (AOF, fsync on every write, a volume), never evicts, and is the one TESSERA_REDIS_URL names", () => {
    const redis = composeServices.redis!;
    const args = (redis.command as string[]).join(" ");
    expect(args).toContain("--appendonly yes");
    expect(args).toContain("--appendfsync always");
    expect(args).toContain("--maxmemory-policy noeviction");
    expect(redis.volumes).toEqual(["redis-data:/data"]);
    expect(compose.volumes).toHaveProperty("redis-data");
    for (const c of composeTessera.filter((c) => c.program === "authority")) {
      expect(new URL(c.env.TESSERA_REDIS_URL!).hostname).toBe("redis");
      // One Redis, no replica: waiting for one would fail every revocation.
      expect(read(c, "TESSERA_REDIS_WAIT_REPLICAS")).toBe(0);
    }
    expect(Object.values(composeServices).filter((s) => String(s.image).startsWith("redis"))).toHaveLength(1);
  });

  it("the callers example parses with the callers-file parser, identifies callers by hashed API keys only, and has a sidecar caller", () => {
    const callers = loadCallersFile(CALLERS_EXAMPLE);
    expect(callers.length).toBeGreaterThan(0);
    for (const c of callers) {
      expect(c.mtls).toBeUndefined();
      expect(c.apiKeySha256.length).toBeGreaterThan(0);
    }
    expect(callers.some((c) => c.permissions.includes("revocations.watch"))).toBe(true);
    expect(callers.some((c) => c.permissions.includes("introspect") && !c.permissions.includes("revocations.watch"))).toBe(true);
    // Only hashes: every string in the file is a caller's name, a permission or a 64-hex-digit SHA-256.
    const json = JSON.parse(readFileSync(CALLERS_EXAMPLE, "utf8")) as { callers: Obj[] };
    for (const c of json.callers) {
      expect(Object.keys(c).sort()).toEqual(["api_keys", "name", "permissions"]);
      for (const k of c.api_keys as Obj[]) expect(k).toEqual({ sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    }
  });
});
