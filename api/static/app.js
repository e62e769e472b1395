// The filterviz page: submit a job, watch it run, browse recent jobs. It uses the public /v1 API
// only (service.js); every check of a job's values happens there, and its errors are shown by the
// field they name.

import { routeAtlas } from "./atlas.js";
import { routeCompare } from "./compare.js";
import { $, element } from "./dom.js";
import { followJob } from "./live.js";
import { api, ApiError, authorizedFetch, FINISHED, POLL_MS, showResult, STREAM_BACKSTOP_MS } from "./service.js";

// ---- the form ----

let layers = new Map(); // layer name -> filter count
const models = new Map(); // model name -> its description in /v1/models: layers, default layer, smallest input
const methods = new Map(); // method name -> its description in /v1/models: defaults, parameters, bounds

async function loadModels() {
  const { models: described, methods: methodList, objectives: objectiveList } = await api("/v1/models");
  const select = $("model");
  for (const model of described) {
    models.set(model.name, model);
    select.append(element("option", { value: model.name }, model.name));
  }
  select.addEventListener("change", () => loadLayers(models.get(select.value)));
  $("model-file").addEventListener("change", uploadModel);
  $("layer").addEventListener("change", () => {
    $("filters-stop").value = Math.min(200, layers.get($("layer").value));
    showFilterHint();
  });
  loadLayers(described[0]);
  loadMethods(methodList.filter((method) => described[0].methods.includes(method.name)));
  loadObjectives(objectiveList);
}

// A whole model of the user's own (POST /v1/models), added to the models with its layers (its convolutions).
async function uploadModel() {
  const [file] = $("model-file").files;
  if (!file) return;
  $("model-file-error").textContent = "";
  const form = new FormData();
  form.append("file", file);
  form.append("preprocessing", $("model-preprocessing").value);
  form.append("name", file.name.slice(0, 64));
  try {
    addUploadedModel(await api("/v1/models", { method: "POST", body: form }));
  } catch (error) {
    $("model-file-error").textContent = error.message;
  }
}

function addUploadedModel(record) {
  if (record.kind !== "model") {
    $("model-file-error").textContent = "that file holds weights: name them as a job's weights through the API";
    return;
  }
  const model = {
    name: record.id,
    layers: record.layers,
    default_layer: record.layers.at(-1).name,
    description: `${record.name ?? "your model"}: ${record.layers.length} convolutions, saved for ${record.input_side} px`,
    min_image_size: Math.min(...record.layers.map((layer) => layer.min_image_size)),
  };
  if (!models.has(model.name)) $("model").append(element("option", { value: model.name }, record.name ?? record.id));
  models.set(model.name, model);
  $("model").value = model.name;
  loadLayers(model);
}

// The kinds of objective a form can set (a direction's vector is for the API, diversity is the number of
// pictures); the channel mean first.
function loadObjectives(described) {
  const select = $("objective");
  for (const kind of described.filter((entry) => !["direction", "diversity"].includes(entry.kind))) {
    select.append(element("option", { value: kind.kind }, kind.kind));
  }
  const summaries = new Map(described.map((entry) => [entry.kind, entry.summary]));
  const classes = described.find((entry) => entry.kind === "class")?.classes ?? [];
  $("class-names").replaceChildren(...classes.map((name) => element("option", { value: name })));
  const show = () => {
    $("objective-summary").textContent = summaries.get(select.value);
    $("neuron-position").hidden = select.value !== "neuron";
    $("class-choice").hidden = select.value !== "class";
    // A class is read from a classifier's logits: take that layer where the model has it.
    if (select.value === "class" && layers.has("logits")) $("layer").value = "logits";
  };
  select.addEventListener("change", show);
  show();
}

// The form's objective: none for the channel mean alone (the default), else its term, with a diversity term
// when each filter is to get several pictures.
function objectiveRequest() {
  const kind = $("objective").value;
  const term = { kind };
  if (kind === "neuron") Object.assign(term, { x: numberOrText("neuron-x"), y: numberOrText("neuron-y") });
  if (kind === "class") term.class = numberOrText("class-name");
  const pictures = numberOrText("pictures");
  if (pictures === 1) return kind === "channel" ? undefined : term;
  return [term, { kind: "diversity", n: pictures }];
}

// The chosen model's layers, its default layer chosen.
function loadLayers(model) {
  const select = $("layer");
  layers = new Map(model.layers.map((layer) => [layer.name, layer.filters]));
  select.replaceChildren(
    ...model.layers.map((layer) => element("option", { value: layer.name }, `${layer.name} (${layer.filters} filters)`)),
  );
  select.value = model.default_layer;
  if ($("objective").value === "class" && layers.has("logits")) select.value = "logits";
  $("model-summary").textContent = `${model.description}; images of ${model.min_image_size} px or more`;
  $("filters-stop").value = Math.min(200, layers.get(select.value));
  showFilterHint();
}

function showFilterHint() {
  $("filters-hint").textContent = `${$("layer").value} has filters 0 to ${layers.get($("layer").value) - 1}`;
}

// The methods as the API lists them; the first (the spec's default) is chosen.
function loadMethods(described) {
  const select = $("method");
  for (const method of described) {
    methods.set(method.name, method);
    select.append(element("option", { value: method.name }, method.name));
  }
  select.addEventListener("change", showMethod);
  showMethod();
}

// A method's own defaults: steps and step size are filled in (what the API would take when they are
// left out), and each parameter gets an input holding its default, within its bounds.
function showMethod() {
  const method = methods.get($("method").value);
  $("method-summary").textContent = method.summary;
  $("steps").value = method.defaults.steps;
  $("step-size").value = method.defaults.step_size;
  $("step-size-hint").textContent = method.step_size;
  $("method-params-title").textContent = `${method.name} parameters`;
  $("method-params-inputs").replaceChildren(...method.params.map(paramField));
  $("method-params").hidden = method.params.length === 0;
  for (const slot of document.querySelectorAll("#method-params [data-error-for], #method-error")) slot.textContent = "";
}

function paramField(param) {
  const id = `param-${param.name}`;
  const bounds = param.type === "boolean" ? "" : `${param.minimum} to ${param.maximum}, `;
  const hint = element("span", { class: "hint", id: `${id}-hint` }, `${param.help} (${bounds}default ${param.default})`);
  const error = element("span", { class: "error", id: `${id}-error`, "data-error-for": `method_params.${param.name}`, role: "alert" });
  const described = `${id}-hint ${id}-error`;
  if (param.type === "boolean") {
    const box = element("input", { id, type: "checkbox", "data-param": param.name, "aria-describedby": described });
    box.checked = param.default;
    return element("p", { class: "field param" }, element("label", { class: "check" }, box, ` ${param.name}`), hint, error);
  }
  const whole = param.type === "integer";
  const input = element("input", {
    id, type: "number", "data-param": param.name, inputmode: whole ? "numeric" : "decimal", value: param.default,
    min: param.minimum, max: param.maximum, step: whole ? 1 : "any", "aria-describedby": described,
  });
  return element("p", { class: "field param" }, element("label", { for: id }, param.name), input, hint, error);
}

function numberOrText(id) {
  const text = $(id).value.trim();
  return text === "" || Number.isNaN(Number(text)) ? text : Number(text);
}

function jobRequest() {
  const request = {
    model: $("model").value,
    layer: $("layer").value,
    method: $("method").value,
    filters: { start: numberOrText("filters-start"), stop: numberOrText("filters-stop") },
    image_size: numberOrText("image-size"),
    grid: { n: numberOrText("grid-n") },
    method_params: {},
  };
  // Left empty, these take the method's (or a random) default on the server.
  for (const [name, id] of [["steps", "steps"], ["step_size", "step-size"], ["seed", "seed"]]) {
    const value = numberOrText(id);
    if (value !== "") request[name] = value;
  }
  for (const input of $("method-params-inputs").querySelectorAll("[data-param]")) {
    const value = input.type === "checkbox" ? input.checked : numberOrText(input.id);
    if (value !== "") request.method_params[input.dataset.param] = value;
  }
  const objective = objectiveRequest();
  if (objective) request.objective = objective;
  return request;
}

function clearFieldErrors() {
  for (const slot of document.querySelectorAll("[data-error-for]")) slot.textContent = "";
  for (const input of document.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

function showFieldErrors(error) {
  const problems = error.problems.length ? error.problems : [{ field: "body", reason: error.message }];
  for (const { field, reason } of problems) {
    const slot = errorSlot(field);
    slot.textContent = slot.textContent ? `${slot.textContent}; ${reason}` : `${field}: ${reason}`;
    const group = slot.closest(".field");
    for (const input of group ? group.querySelectorAll("input, select") : []) input.setAttribute("aria-invalid", "true");
  }
  const first = document.querySelector("[aria-invalid='true']");
  if (first) first.focus();
}

// Where a problem is shown: by its field ("method_params.octaves" by that input), else by the field
// it is part of ("filters.stop" by filters), else under the form.
function errorSlot(field) {
  for (const name of [field, field.split(".")[0]]) {
    const slot = document.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
    if (slot) return slot;
  }
  return $("form-error");
}

async function submitJob(event) {
  event.preventDefault();
  clearFieldErrors();
  const button = event.submitter ?? $("job-form").querySelector("button");
  button.disabled = true;
  try {
    const job = await api("/v1/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(jobRequest()),
    });
    history.pushState({}, "", `/jobs/${job.id}`);
    openJob(job.id);
    refreshRecent();
  } catch (error) {
    if (error instanceof ApiError) showFieldErrors(error);
    else $("form-error").textContent = `Could not reach the API: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

// ---- one job ----

let watching = null; // {id, timer, shown: Set of filter indexes, stream, streaming}

function stopWatching() {
  if (watching) {
    clearTimeout(watching.timer);
    watching.stream.stop();
  }
  watching = null;
}

function openJob(id) {
  stopWatching();
  const watch = { id, timer: null, shown: new Set(), streaming: true };
  watch.stream = followJob(id, authorizedFetch, {
    frame: (data) => paintFrame(watch, data),
    filters: (data) => {
      for (const filter of data.filters) unpaint(filter.index);
      pollSoon(watch);
    },
    status: () => pollSoon(watch),
    progress: () => pollSoon(watch),
    end: () => stopStreaming(watch),
    unavailable: () => stopStreaming(watch),
  });
  watching = watch;
  $("job").hidden = false;
  $("job-live").hidden = true;
  $("job-live-filters").replaceChildren();
  $("job-title").textContent = `Job ${id}`;
  $("job-filters").replaceChildren();
  $("job-params").replaceChildren();
  $("job-grid").hidden = true;
  $("job-error").textContent = "";
  $("compare-method").replaceChildren();
  $("compare-error").textContent = "";
  poll(watching);
}

async function poll(watch) {
  let job;
  try {
    job = await api(`/v1/jobs/${watch.id}`);
  } catch (error) {
    if (watching !== watch) return;
    $("job-status").textContent = error.status === 404 ? "No such job." : `Could not load the job: ${error.message}`;
    if (error.status !== 404) watch.timer = setTimeout(() => poll(watch), POLL_MS * 3);
    return;
  }
  if (watching !== watch) return; // another job was opened meanwhile
  watch.job = job;
  showJob(job);
  // A chunk's pictures are listed once its record is stored, a moment after its progress counts.
  if (watch.shown.size < job.progress.done || FINISHED.has(job.status)) await showFilters(watch, job);
  if (!FINISHED.has(job.status)) watch.timer = setTimeout(() => poll(watch), watch.streaming ? STREAM_BACKSTOP_MS : POLL_MS);
  else refreshRecent();
}

function pollSoon(watch) {
  if (watching !== watch) return;
  clearTimeout(watch.timer);
  watch.timer = setTimeout(() => poll(watch), 0);
}

// The stream ended (the job did) or can't be had: polls carry on at their own pace.
function stopStreaming(watch) {
  watch.streaming = false;
  pollSoon(watch);
}

// ---- live painting: the running batch's pictures as they form, until each is stored ----

function paintFrame(watch, frame) {
  if (watching !== watch) return;
  const list = $("job-live-filters");
  $("job-live").hidden = false;
  $("job-live-step").textContent = `Step ${frame.step} of ${frame.steps}`;
  for (const { index, loss, picture } of frame.filters) {
    if (watch.shown.has(index)) continue;
    let item = list.querySelector(`li[data-index="${index}"]`);
    if (!item) {
      item = element("li", { "data-index": index },
        element("img", { alt: `Filter ${index}, forming`, width: 64, height: 64 }),
        element("span", { class: "index", "aria-hidden": "true" }, String(index)),
        element("span", { class: "loss" }));
      const after = [...list.children].find((li) => Number(li.dataset.index) > index);
      list.insertBefore(item, after ?? null);
    }
    item.querySelector("img").src = picture;
    item.querySelector(".loss").textContent = loss === null ? "" : `loss ${loss.toFixed(2)}`;
  }
}

function unpaint(index) {
  const list = $("job-live-filters");
  list.querySelector(`li[data-index="${index}"]`)?.remove();
  if (!list.children.length) $("job-live").hidden = true;
}

function showJob(job) {
  $("job-status").replaceChildren("Status: ", element("span", { class: `status status-${job.status}` }, job.status));
  const progress = $("job-progress");
  progress.max = job.progress.total;
  progress.value = job.progress.done;
  const percent = Math.round((100 * job.progress.done) / job.progress.total);
  progress.setAttribute("aria-valuetext", `${job.progress.done} of ${job.progress.total} filters`);
  $("job-progress-text").textContent = `${job.progress.done} / ${job.progress.total} (${percent}%)`;
  showQueue(job.queue);
  $("job-cancel").hidden = FINISHED.has(job.status);
  $("job-error").textContent = job.error ? `${job.error.code}: ${job.error.message}` : "";
  if (job.status === "succeeded" && $("job-grid").hidden) {
    showResult($("job-grid-image"), "src", job.links.grid);
    showResult($("job-grid-download"), "href", job.links.grid);
    showResult($("job-manifest"), "href", job.links.manifest);
    $("job-grid-presigned").href = job.links.grid_presigned;
    $("job-grid").hidden = false;
  }
  showParams(job);
}

// A queued job's place in fair dispatch: chunks sent before its next one, and a guessed start.
function showQueue(queue) {
  const line = $("job-queue");
  line.hidden = !queue;
  if (!queue) return;
  const ahead = queue.chunks_ahead === 0 ? "next to start" : `${queue.chunks_ahead} chunks of work ahead`;
  const eta = queue.estimated_start_seconds;
  line.textContent = `Waiting: ${ahead}` + (eta === null ? "" : `, starts in about ${Math.ceil(eta)} s`);
}

// "neuron (x 0.25, y 0.5) + 0.1 × layer": each term with its parameters and weight.
function describeObjective(terms) {
  if (terms.length === 0) return "channel";
  return terms.map(({ kind, weight, vector, ...rest }) => {
    const named = Object.entries(rest).map(([name, value]) => `${name} ${value}`);
    if (vector) named.push(`${vector.length} numbers`);
    const scaled = weight === 1 ? "" : `${weight} × `;
    return `${scaled}${kind}${named.length ? ` (${named.join(", ")})` : ""}`;
  }).join(" + ");
}

function showParams(job) {
  const { params } = job;
  const filters = params.filters;
  const rows = [
    ["model", `${params.model} (${params.method})`],
    ["layer", params.layer],
    ["filters", filters.length > 6 ? `${filters[0]} … ${filters[filters.length - 1]} (${filters.length})` : filters.join(", ")],
    ["method parameters", describeParams(params.method_params)],
    ["objective", describeObjective(params.objective ?? [])],
    ["image size", `${params.image_size} px`],
    ["steps", `${params.steps} × ${params.step_size}`],
    ["grid", `${params.grid.n} × ${params.grid.n}, margin ${params.grid.margin} px`],
    ["seed", params.seed],
    ["weights", params.weights ? `${params.weights} (uploaded)` : job.weights ?? "not yet known"],
    ["created", job.created_at],
    ["started", job.started_at ?? "–"],
    ["finished", job.finished_at ?? "–"],
  ];
  $("job-params").replaceChildren(...rows.flatMap(([name, value]) => [element("dt", {}, name), element("dd", {}, String(value))]));
  offerComparison(params.method);
}

function describeParams(params) {
  const entries = Object.entries(params ?? {});
  return entries.length ? entries.map(([name, value]) => `${name} ${value}`).join(", ") : "none";
}

async function showFilters(watch, job) {
  let listing;
  try {
    listing = await api(`/v1/jobs/${watch.id}/filters`);
  } catch {
    return; // the next poll tries again
  }
  if (watching !== watch) return;
  const list = $("job-filters");
  for (const filter of listing.filters) {
    if (watch.shown.has(filter.index)) continue;
    watch.shown.add(filter.index);
    const label = `Filter ${filter.index}, loss ${filter.loss.toFixed(3)}${filter.dead ? ", dead" : ""}`;
    // A shrunk copy: 64 CSS pixels, sharp on 2x screens, small on slow links whatever the image size.
    const image = element("img", { alt: "", loading: "lazy", width: 64, height: 64 });
    showResult(image, "src", `${filter.url}?size=128`);
    const button = element("button", { type: "button", "aria-label": label, title: label }, image,
      element("span", { class: "index", "aria-hidden": "true" }, String(filter.index)));
    button.addEventListener("click", () => openFilter(filter, job.params));
    const item = element("li", { class: filter.dead ? "dead" : "", "data-index": filter.index }, button);
    // Keep the list in filter order whatever order chunks finish in.
    const after = [...list.children].find((li) => Number(li.dataset.index) > filter.index);
    list.insertBefore(item, after ?? null);
  }
  $("job-filter-count").textContent = `(${watch.shown.size} of ${job.progress.total})`;
}

function openFilter(filter, params) {
  $("filter-dialog-title").textContent = `Filter ${filter.index}`;
  const image = $("filter-dialog-image");
  image.removeAttribute("src");
  showResult(image, "src", filter.url);
  image.alt = `What filter ${filter.index} responds to most`;
  $("filter-dialog-loss").textContent =
    `Final loss ${filter.loss.toFixed(4)}${filter.dead ? " (dead: left out of the grid)" : ""}`;
  $("filter-dialog-unit").href = `/atlas/${params.model}/${params.layer}/${filter.index}`;
  // The atlas is the built-in networks'; an uploaded model's filters are its owners', in their jobs.
  $("filter-dialog-unit").hidden = params.model.startsWith("upload:");
  $("filter-dialog").showModal();
}

// ---- the same filters under another method ----

function offerComparison(method) {
  const select = $("compare-method");
  if (select.options.length) return; // once per job opened
  const others = [...methods.keys()].filter((name) => name !== method);
  select.replaceChildren(...others.map((name) => element("option", { value: name }, name)));
  $("compare-form").hidden = others.length === 0;
}

// Submits this job's filters, image size, grid and seed under the chosen method (its own steps, step
// size and parameters), then shows both side by side. Filters rendered before come from the cache.
async function compareWithMethod(event) {
  event.preventDefault();
  const job = watching?.job;
  if (!job) return;
  const { model, layer, filters, image_size, grid, seed } = job.params;
  const button = event.submitter ?? $("compare-form").querySelector("button");
  button.disabled = true;
  $("compare-error").textContent = "";
  try {
    const other = await api("/v1/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ model, layer, filters, image_size, grid, seed, method: $("compare-method").value }),
    });
    history.pushState({}, "", `/compare?a=${job.id}&b=${other.id}`);
    route();
    refreshRecent();
  } catch (error) {
    $("compare-error").textContent = `Could not submit it: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

async function cancelJob(id) {
  try {
    await api(`/v1/jobs/${id}/cancel`, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
  } catch (error) {
    if (error.status !== 409) alert(`Cancel failed: ${error.message}`); // 409: it finished meanwhile
  }
  if (watching?.id === id) {
    clearTimeout(watching.timer);
    poll(watching);
  }
  refreshRecent();
}

// ---- recent jobs ----

async function refreshRecent() {
  // Rebuilding the list under someone tabbing through it would throw their focus away.
  if ($("recent-jobs").contains(document.activeElement)) return;
  let jobs;
  try {
    ({ jobs } = await api("/v1/jobs?limit=20"));
  } catch {
    return;
  }
  const items = jobs.map((job) => {
    const placeholder = () => element("span", { class: "no-thumbnail", "aria-hidden": "true" });
    let thumbnail = placeholder();
    if (job.status === "succeeded") {
      thumbnail = element("img", { alt: "", loading: "lazy", width: 48, height: 48 });
      thumbnail.addEventListener("error", (event) => event.target.replaceWith(placeholder()));
      showResult(thumbnail, "src", job.links.thumbnail);
    }
    const link = element("a", { href: `/jobs/${job.id}` }, `${job.params.layer}, ${job.progress.total} filters`);
    link.addEventListener("click", (event) => {
      event.preventDefault();
      history.pushState({}, "", link.href);
      openJob(job.id);
    });
    const meta = element("span", { class: "meta" }, link, element("br"),
      element("span", { class: `status status-${job.status}` }, job.status),
      ` · ${job.progress.done}/${job.progress.total} · ${job.created_at.replace("T", " ").slice(0, 19)}`);
    const item = element("li", { "data-job": job.id }, thumbnail, meta);
    if (!FINISHED.has(job.status)) {
      const cancel = element("button", { type: "button", "aria-label": `Cancel job ${job.id}` }, "Cancel");
      cancel.addEventListener("click", () => cancelJob(job.id));
      item.append(cancel);
    }
    return item;
  });
  $("recent-jobs").replaceChildren(...items);
  if (!items.length) $("recent-jobs").append(element("li", {}, "No jobs yet."));
}

// ---- routing: /, /jobs/<id> and the atlas's views (atlas.js) ----

function route() {
  const inAtlas = routeAtlas();
  const inCompare = routeCompare();
  $("submit").hidden = $("recent").hidden = inAtlas || inCompare;
  const match = location.pathname.match(/^\/jobs\/([^/]+)$/);
  if (match) openJob(match[1]);
  else {
    stopWatching();
    $("job").hidden = true;
  }
}

// Links marked data-route change the view in place, with a URL of their own.
function followRouteLinks(event) {
  const link = event.target.closest("a[data-route]");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  link.closest("dialog")?.close();
  history.pushState({}, "", link.href);
  route();
}

async function main() {
  $("job-form").addEventListener("submit", submitJob);
  $("compare-form").addEventListener("submit", compareWithMethod);
  $("job-cancel").addEventListener("click", () => watching && cancelJob(watching.id));
  window.addEventListener("popstate", route);
  document.addEventListener("click", followRouteLinks);
  await loadModels();
  route();
  refreshRecent();
  setInterval(refreshRecent, 5000);
  document.body.dataset.ready = "true";
}

main();
