// The atlas views (shared/atlas.py), each at its own URL:
//   /atlas                      the models
//   /atlas/<model>              its conv layers, with each atlas's progress on them
//   /atlas/<model>/<layer>      every unit of the layer as a lazily loaded thumbnail (?atlas=<id> picks the method)
//   /atlas/<model>/<layer>/<k>  one unit under each method rendered: picture, final loss, dead or alive, links
// It reads the same /v1 API as any client.

import { $, element } from "./dom.js";
import { api, authorizedFetch, showResult } from "./service.js";

const THUMBNAIL_PX = 64;
// Units on demand (api/units.py): a unit no atlas covers renders the first time it comes into view,
// at most this many at a time (the service's bound per visitor), each asked again after its
// Retry-After until its picture is there.
const RENDERING_AT_ONCE = 4;
const waiting = [];
let rendering = 0;

function routeLink(href, ...children) {
  return element("a", { href, "data-route": "" }, ...children);
}

function crumbs(model, layer, unit) {
  const parts = [routeLink("/atlas", "Atlas")];
  if (model) parts.push(" › ", routeLink(`/atlas/${model}`, model));
  if (layer) parts.push(" › ", routeLink(`/atlas/${model}/${layer}`, layer));
  if (unit !== undefined) parts.push(" › ", `unit ${unit}`);
  $("atlas-crumbs").replaceChildren(...parts);
}

function describe(atlas) {
  const p = atlas.params;
  return `${p.method}, ${p.image_size} px, seed ${p.seed}`;
}

// Thumbnails load when they come into view: as <img loading=lazy> where no token is needed, and
// through fetch (showResult) once visible where one is.
const visible = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    visible.unobserve(entry.target);
    showResult(entry.target, "src", entry.target.dataset.src);
  }
});

const unitsInView = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    unitsInView.unobserve(entry.target);
    waiting.push(entry.target);
  }
  renderWaiting();
});

function onDemandImage(url, alt, size) {
  const image = element("img", { alt, width: size, height: size, class: "rendering", "data-unit": url });
  unitsInView.observe(image);
  return image;
}

function renderWaiting() {
  while (rendering < RENDERING_AT_ONCE && waiting.length) {
    const image = waiting.shift();
    if (!image.isConnected) continue; // the visitor went elsewhere
    rendering += 1;
    askUntilRendered(image).finally(() => {
      rendering -= 1;
      renderWaiting();
    });
  }
}

async function askUntilRendered(image) {
  while (image.isConnected) {
    const response = await authorizedFetch(image.dataset.unit);
    if (response.ok && response.status === 200) {
      image.src = URL.createObjectURL(await response.blob());
      image.classList.remove("rendering");
      return;
    }
    if (response.status !== 202 && response.status !== 429) {
      image.alt += ` (not available: ${response.status})`;
      return;
    }
    const seconds = Number(response.headers.get("Retry-After")) || 2;
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  }
}

function lazyImage(url, alt, size) {
  const image = element("img", { alt, width: size, height: size, loading: "lazy", "data-src": url });
  visible.observe(image);
  return image;
}

async function showModels() {
  crumbs();
  const { models } = await api("/v1/models");
  const items = models.map((model) => element("li", {}, routeLink(`/atlas/${model.name}`, model.name)));
  $("atlas-body").replaceChildren(element("h3", {}, "Models"), element("ul", { class: "atlas-models" }, ...items));
}

async function showModel(model) {
  crumbs(model);
  const [{ models }, { atlases }] = await Promise.all([api("/v1/models"), api("/v1/atlas")]);
  const found = models.find((m) => m.name === model);
  const mine = atlases.filter((atlas) => atlas.params.model === model);
  const head = element("tr", {}, element("th", {}, "Layer"), element("th", {}, "Filters"),
    ...mine.map((atlas) => element("th", {}, describe(atlas))));
  const rows = (found?.layers ?? []).map((layer) => {
    const cells = mine.map((atlas) => {
      const part = atlas.layers.find((entry) => entry.layer === layer.name);
      return element("td", {}, part ? `${part.status} · ${part.progress.done}/${part.progress.total}` : "–");
    });
    return element("tr", { "data-layer": layer.name },
      element("td", {}, routeLink(`/atlas/${model}/${layer.name}`, layer.name)), element("td", {}, `${layer.filters}`),
      ...cells);
  });
  const summary = mine.map((atlas) => element("li", {}, `${describe(atlas)}: `,
    element("span", { class: `status status-${atlas.status}` }, atlas.status),
    ` · ${atlas.progress.done}/${atlas.progress.total} filters · weights ${atlas.weights ?? "not yet known"}`));
  $("atlas-body").replaceChildren(
    element("h3", {}, `${model}: atlases`),
    mine.length ? element("ul", { id: "atlas-list" }, ...summary) : element("p", {}, "No atlas yet: POST /v1/atlas or `filterviz atlas` starts one."),
    element("table", { class: "atlas-layers" }, element("thead", {}, head), element("tbody", {}, ...rows)));
}

async function atlasesOf(model, layer) {
  const { atlases } = await api("/v1/atlas");
  return atlases.filter((atlas) => atlas.params.model === model && atlas.layers.some((entry) => entry.layer === layer));
}

async function showLayer(model, layer) {
  crumbs(model, layer);
  const covering = await atlasesOf(model, layer);
  if (!covering.length) {
    await showLayerOnDemand(model, layer);
    return;
  }
  const wanted = new URLSearchParams(location.search).get("atlas");
  const atlas = covering.find((a) => a.id === wanted) ?? covering[0];
  const picker = element("p", { class: "atlas-methods" }, "Method: ", ...covering.flatMap((a) => [
    a.id === atlas.id ? element("strong", {}, describe(a)) : routeLink(`/atlas/${model}/${layer}?atlas=${a.id}`, describe(a)), " "]));
  const { units, filters } = await api(`/v1/atlas/${atlas.id}/layers/${layer}`);
  const items = units.map((unit) => element("li", { class: unit.dead ? "dead" : "alive" },
    routeLink(`/atlas/${model}/${layer}/${unit.index}`,
      lazyImage(`${unit.picture}?size=${THUMBNAIL_PX}`, `unit ${unit.index}`, THUMBNAIL_PX),
      element("span", {}, `${unit.index}`))));
  $("atlas-body").replaceChildren(picker,
    element("p", { id: "atlas-layer-count" }, `${units.length} of ${filters} units rendered`),
    element("ul", { id: "atlas-units", class: "atlas-units" }, ...items));
}

// Every unit of a layer no atlas covers, each rendered (seed, the atlas' 64 px) when it comes into view.
async function showLayerOnDemand(model, layer) {
  const { models } = await api("/v1/models");
  const found = models.find((m) => m.name === model)?.layers.find((l) => l.name === layer);
  if (!found) {
    $("atlas-body").replaceChildren(element("p", {}, `${model} has no layer ${layer}.`));
    return;
  }
  const items = Array.from({ length: found.filters }, (_, index) => element("li", {},
    routeLink(`/atlas/${model}/${layer}/${index}`,
      onDemandImage(`/v1/units/${model}/${layer}/${index}.png`, `unit ${index}`, THUMBNAIL_PX),
      element("span", {}, `${index}`))));
  $("atlas-body").replaceChildren(
    element("p", { id: "atlas-on-demand" }, `No atlas covers ${layer} yet: each unit is rendered (seed, ${THUMBNAIL_PX} px) `
      + `the first time it comes into view, ${RENDERING_AT_ONCE} at a time, and kept for everyone after.`),
    element("ul", { id: "atlas-units", class: "atlas-units" }, ...items));
}

async function showUnit(model, layer, index) {
  crumbs(model, layer, index);
  const covering = await atlasesOf(model, layer);
  // Where no atlas covers the layer, the unit under seed, rendered the first time anyone looks.
  const onDemand = covering.length ? [] : [element("figure", { class: "atlas-unit" },
    onDemandImage(`/v1/units/${model}/${layer}/${index}.png`, `${layer} unit ${index}, seed`, 256),
    element("figcaption", {}, `seed, ${THUMBNAIL_PX} px: rendered on demand`))];
  const figures = await Promise.all(covering.map(async (atlas) => {
    const unit = await api(`/v1/atlas/${atlas.id}/layers/${layer}/units/${index}`).catch(() => null);
    if (!unit) return element("figure", { class: "atlas-unit" }, element("figcaption", {}, `${describe(atlas)}: not rendered yet`));
    const image = element("img", { alt: `${layer} unit ${index}, ${atlas.params.method}`, width: 256, height: 256 });
    showResult(image, "src", unit.picture);
    return element("figure", { class: "atlas-unit" }, image, element("figcaption", {},
      element("strong", {}, describe(atlas)), element("br"),
      `final loss ${unit.loss.toFixed(4)} · `, element("span", { class: "unit-state" }, unit.dead ? "dead" : "alive"),
      unit.cached ? " · from the cache" : "", element("br"),
      element("a", { href: unit.picture }, "picture"), " · ", element("a", { href: unit.links.self }, "JSON")));
  }));
  const previous = index > 0 ? routeLink(`/atlas/${model}/${layer}/${index - 1}`, "← previous unit") : "";
  const next = routeLink(`/atlas/${model}/${layer}/${index + 1}`, "next unit →");
  $("atlas-body").replaceChildren(element("h3", { id: "atlas-unit-title" }, `${layer} · unit ${index}`),
    element("div", { class: "atlas-figures" }, ...figures, ...onDemand),
    element("p", {}, previous, " ", routeLink(`/atlas/${model}/${layer}`, "all units of the layer"), " ", next));
}

// Shows the atlas view the path names and returns true, or returns false for a path outside /atlas.
export function routeAtlas() {
  const match = location.pathname.match(/^\/atlas(?:\/([^/]+))?(?:\/([^/]+))?(?:\/(\d+))?\/?$/);
  $("atlas").hidden = !match;
  if (!match) return false;
  const [, model, layer, unit] = match.map((part) => part && decodeURIComponent(part));
  const shown = unit !== undefined ? showUnit(model, layer, Number(unit))
    : layer ? showLayer(model, layer) : model ? showModel(model) : showModels();
  shown.catch((error) => $("atlas-body").replaceChildren(element("p", { class: "error", role: "alert" }, error.message)));
  return true;
}
