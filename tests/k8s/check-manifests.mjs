// Renders every overlay of k8s/ as kustomize would and validates every object it yields against the schemas of a
// recent Kubernetes release (kubernetes-models 5.1.0, generated from Kubernetes' OpenAPI spec; it has
// resource.k8s.io/v1, so 1.34 or newer: types, required fields, enums, formats; unknown fields are not refused)
// and, for the custom resources, against their own (KEDA's ScaledObject, the Prometheus Operator's PodMonitor).
//
// kubectl is not assumed on a user's machine, so the rendering is done here, for the subset of kustomize the
// manifests use: resources (files and folders), namespace, images (newName/newTag) and JSON 6902 patches with a
// target (kind, name as a regular expression). A kustomization that uses anything else is refused by name, so the
// check can never silently render less than kustomize would.
//
//   node check-manifests.mjs [k8s folder]      prints each overlay's objects and exits 1 on the first problem
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import jsonpatch from "fast-json-patch";

const root = path.resolve(process.argv[2] ?? path.join(import.meta.dirname, "..", "..", "k8s"));
const supported = new Set(["apiVersion", "kind", "resources", "namespace", "images", "patches"]);
// Kinds that have no namespace.
const clusterScoped = new Set(["Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume", "StorageClass"]);

function render(dir) {
  const file = path.join(dir, "kustomization.yaml");
  const k = YAML.parse(fs.readFileSync(file, "utf8"));
  for (const key of Object.keys(k)) {
    if (!supported.has(key)) throw new Error(`${file}: '${key}' is not rendered by this check (supported: ${[...supported].join(", ")})`);
  }
  let objects = [];
  for (const resource of k.resources ?? []) {
    const target = path.join(dir, resource);
    if (fs.statSync(target).isDirectory()) objects.push(...render(target));
    else objects.push(...YAML.parseAllDocuments(fs.readFileSync(target, "utf8")).map(d => d.toJS()).filter(Boolean)
      .map(o => ({ ...o, __source: path.relative(root, target) })));
  }
  if (k.namespace) {
    for (const o of objects) if (!clusterScoped.has(o.kind)) o.metadata = { ...o.metadata, namespace: k.namespace };
  }
  for (const image of k.images ?? []) {
    for (const o of objects) {
      for (const c of [...(o.spec?.template?.spec?.containers ?? []), ...(o.spec?.template?.spec?.initContainers ?? [])]) {
        const [name, tag] = c.image.split(":");
        if (name !== image.name) continue;
        c.image = `${image.newName ?? name}:${image.newTag ?? tag ?? "latest"}`;
      }
    }
  }
  for (const patch of k.patches ?? []) {
    if (!patch.target || typeof patch.patch !== "string") throw new Error(`${file}: only inline JSON 6902 patches with a target are rendered`);
    const ops = YAML.parse(patch.patch);
    const name = patch.target.name ? new RegExp(`^(?:${patch.target.name})$`) : null;
    const matched = objects.filter(o => (!patch.target.kind || o.kind === patch.target.kind) && (!name || name.test(o.metadata?.name)));
    if (matched.length === 0) throw new Error(`${file}: a patch's target ${JSON.stringify(patch.target)} matches nothing`);
    for (const o of matched) jsonpatch.applyPatch(o, ops, true, true);
  }
  return objects;
}

async function modelFor(o) {
  const [group, version] = o.apiVersion.includes("/") ? o.apiVersion.split("/") : ["", o.apiVersion];
  const module =
    group === "keda.sh" ? `@kubernetes-models/keda/${group}/${version}` :
    group === "monitoring.coreos.com" ? `@kubernetes-models/prometheus-operator/${group}/${version}` :
    group === "" ? `kubernetes-models/${version}` : `kubernetes-models/${group}/${version}`;
  let models;
  try { models = await import(module); } catch { throw new Error(`no schema for ${o.apiVersion} (${module})`); }
  const Model = models[o.kind];
  if (!Model) throw new Error(`no schema for kind ${o.kind} in ${o.apiVersion}`);
  return Model;
}

let failed = false;
const overlays = fs.readdirSync(path.join(root, "overlays")).filter(d => fs.existsSync(path.join(root, "overlays", d, "kustomization.yaml"))).sort();
for (const overlay of ["base", ...overlays.map(o => `overlays/${o}`)]) {
  let objects;
  try {
    objects = render(path.join(root, overlay));
  } catch (e) {
    console.log(`${overlay}: FAILED to render: ${e.message}`);
    failed = true;
    continue;
  }
  const problems = [];
  const seen = new Set();
  for (const o of objects) {
    const id = `${o.kind}/${o.metadata?.namespace ?? ""}/${o.metadata?.name}`;
    if (seen.has(id)) problems.push(`${id}: defined twice`);
    seen.add(id);
    const source = o.__source;
    delete o.__source;
    try {
      const Model = await modelFor(o);
      new Model(o).validate();
    } catch (e) {
      problems.push(`${o.kind} ${o.metadata?.name} (${source}): ${e.message}`);
    }
  }
  const kinds = objects.map(o => o.kind).reduce((m, k) => m.set(k, (m.get(k) ?? 0) + 1), new Map());
  const summary = [...kinds].map(([k, n]) => `${n} ${k}`).join(", ");
  if (problems.length === 0) console.log(`${overlay}: ${objects.length} objects valid (${summary})`);
  else {
    failed = true;
    console.log(`${overlay}: ${problems.length} of ${objects.length} objects invalid:\n  ${problems.join("\n  ")}`);
  }
}
process.exit(failed ? 1 : 0);
