// Two jobs side by side, filter by filter, at /compare?a=<job id>&b=<job id> (a permanent URL): each
// filter's picture under each job's method, with its final loss, whether it is dead, revived or alive,
// and a link to the full-size picture. Meant for the same filters under two methods (the job page's
// "Render and compare" submits such a pair); any two jobs can be compared, and where their filters,
// size or seed differ the view says so. It follows both jobs' event streams, each filter's cell
// painting its forming picture and loss until the stored one replaces it, and polls until both jobs
// finish (less often while the streams prompt it), reading the same /v1 API as any client, with the
// token where one is set (api, authorizedFetch, showResult).

import { $, element } from "./dom.js";
import { api, authorizedFetch, FINISHED, POLL_MS, showResult, STREAM_BACKSTOP_MS } from "./service.js";
import { followJob } from "./live.js";

const PICTURE_PX = 128;

// {ids, timer, drawn, sides: [{job, filters: Map index -> entry, forming: Map index -> frame's filter,
//  final, stream, streaming}]}
let comparing = null;

function stopComparing() {
  if (comparing) {
    clearTimeout(comparing.timer);
    for (const side of comparing.sides) side.stream.stop();
  }
  comparing = null;
}

function openCompare(ids) {
  stopComparing();
  const compare = { ids, timer: null, sides: [], drawn: "" };
  compare.sides = ids.map((id, column) => {
    const side = { job: null, filters: new Map(), forming: new Map(), final: false, streaming: true };
    side.stream = followJob(id, authorizedFetch, {
      frame: (data) => paintFrame(compare, column, data),
      filters: () => pollSoon(compare),
      status: () => pollSoon(compare),
      progress: () => pollSoon(compare),
      end: () => stopStreaming(compare, side),
      unavailable: () => stopStreaming(compare, side),
    });
    return side;
  });
  comparing = compare;
  for (const id of ["compare-status", "compare-error-line"]) $(id).textContent = "";
  $("compare-head").replaceChildren();
  $("compare-rows").replaceChildren();
  poll(compare);
}

function pollSoon(compare) {
  if (comparing !== compare) return;
  clearTimeout(compare.timer);
  compare.timer = setTimeout(() => poll(compare), 0);
}

// A side's stream ended (its job did) or can't be had: polls carry on at their own pace.
function stopStreaming(compare, side) {
  side.streaming = false;
  pollSoon(compare);
}

// A frame of one side's running batch: each filter not yet stored shows it in its cell.
function paintFrame(compare, column, frame) {
  if (comparing !== compare) return;
  const side = compare.sides[column];
  for (const filter of frame.filters) {
    if (side.filters.has(filter.index)) continue;
    side.forming.set(filter.index, filter);
    const row = $("compare-rows").querySelector(`tr[data-index="${filter.index}"]`);
    if (!side.job || !row) continue; // drawn with the next poll
    row.children[column + 1].replaceWith(cell(compare.sides.map((each) => each.job), side, filter.index));
  }
}

async function poll(compare) {
  let jobs;
  try {
    jobs = await Promise.all(compare.ids.map((id) => api(`/v1/jobs/${encodeURIComponent(id)}`)));
  } catch (error) {
    if (comparing !== compare) return;
    $("compare-error-line").textContent =
      error.status === 404 ? "No such job: check the two job ids in the address." : `Could not load the jobs: ${error.message}`;
    if (error.status !== 404) compare.timer = setTimeout(() => poll(compare), POLL_MS * 3);
    return;
  }
  if (comparing !== compare) return;
  await Promise.all(jobs.map((job, side) => loadFilters(compare.sides[side], job)));
  if (comparing !== compare) return;
  draw(compare);
  if (jobs.every((job) => FINISHED.has(job.status))) return;
  const streaming = compare.sides.every((side) => side.streaming || FINISHED.has(side.job.status));
  clearTimeout(compare.timer);
  compare.timer = setTimeout(() => poll(compare), streaming ? STREAM_BACKSTOP_MS : POLL_MS);
}

// A side's filters: from the manifest once its job succeeded (it says which filters were revived),
// from the job's listing of stored pictures while it runs.
async function loadFilters(side, job) {
  side.job = job;
  if (side.final) return;
  if (job.status === "succeeded") {
    const manifest = await api(job.links.manifest).catch(() => null);
    if (manifest) {
      side.filters = new Map(manifest.filters.map((entry) => [entry.index, entry]));
      side.final = true;
      return;
    }
  }
  if (side.filters.size >= job.progress.done && !FINISHED.has(job.status)) return; // nothing new yet
  const listing = await api(job.links.filters).catch(() => null);
  if (listing) side.filters = new Map(listing.filters.map((entry) => [entry.index, entry]));
  for (const index of side.filters.keys()) side.forming.delete(index); // stored: its forming picture goes
}

function draw(compare) {
  const jobs = compare.sides.map((side) => side.job);
  $("compare-status").replaceChildren(...jobs.flatMap((job, i) => [i ? " · " : "", `${label(jobs, job)}: `,
    element("span", { class: `status status-${job.status}` }, job.status), ` ${job.progress.done}/${job.progress.total}`]));
  $("compare-error-line").textContent = differences(jobs);
  // Redrawn only when something new arrived: pictures already shown are not fetched again.
  const state = JSON.stringify(compare.sides.map((side) => [side.job.status, side.filters.size, side.final]));
  if (state === compare.drawn) return;
  compare.drawn = state;
  $("compare-title").textContent = `${jobs[0].params.layer}: ${jobs.map((job) => label(jobs, job)).join(" and ")}, filter by filter`;
  $("compare-head").replaceChildren(element("tr", {}, element("th", { scope: "col" }, "Filter"),
    ...jobs.map((job) => element("th", { scope: "col" }, heading(jobs, job)))));
  const indexes = [...new Set(jobs.flatMap((job) => job.params.filters))].sort((a, b) => a - b);
  $("compare-rows").replaceChildren(...indexes.map((index) => element("tr", { "data-index": index },
    element("th", { scope: "row" }, String(index)),
    ...compare.sides.map((side) => cell(jobs, side, index)))));
}

// What tells the two sides apart: their methods, or where those agree and the weights don't, their
// weights (the same filters before and after fine-tuning, say).
function weightsOf(job) {
  return job.params.weights ?? job.weights ?? "the service's weights";
}

function comparedBy(jobs) {
  const sameMethod = jobs[0].params.method === jobs[1].params.method;
  return sameMethod && weightsOf(jobs[0]) !== weightsOf(jobs[1]) ? "weights" : "method";
}

function label(jobs, job) {
  return comparedBy(jobs) === "weights" ? weightsOf(job) : job.params.method;
}

function heading(jobs, job) {
  const p = job.params;
  const link = element("a", { href: `/jobs/${job.id}`, "data-route": "" }, label(jobs, job));
  return element("span", {}, link, element("br"),
    element("span", { class: "hint" }, `${p.steps} steps × ${p.step_size}, ${p.image_size} px, seed ${p.seed}`));
}

// What differs between the two jobs besides what is compared (the method and its settings, or the
// weights where the methods agree), if anything.
function differences(jobs) {
  const [a, b] = jobs.map((job) => job.params);
  const compared = comparedBy(jobs);
  const differ = ["model", "layer", "image_size", "seed"].filter((name) => a[name] !== b[name]);
  if (a.filters.join() !== b.filters.join()) differ.push("filters");
  if (compared === "method" && jobs[0].weights && jobs[1].weights && jobs[0].weights !== jobs[1].weights) differ.push("weights");
  return differ.length ? `These two jobs differ in ${differ.join(", ")}: not only the ${compared} changes.` : "";
}

function cell(jobs, side, index) {
  const { job } = side;
  const entry = side.filters.get(index);
  const forming = side.forming.get(index);
  if (!entry && forming && !FINISHED.has(job.status)) {
    const image = element("img", { alt: `Filter ${index} under ${label(jobs, job)}, forming`, width: PICTURE_PX, height: PICTURE_PX });
    image.src = forming.picture;
    return element("td", { class: "forming" }, image,
      element("span", { class: "loss" }, forming.loss === null ? "" : `loss ${forming.loss.toFixed(3)}`), " ",
      element("span", { class: "marker" }, "forming"));
  }
  if (!entry) {
    const why = !job.params.filters.includes(index) ? "not in this job" : FINISHED.has(job.status) ? "not rendered" : "rendering…";
    return element("td", { class: "pending" }, why);
  }
  const url = job.links.filter.replace("{index}", index);
  const state = entry.dead ? "dead" : entry.revived ? "revived" : "alive";
  const image = element("img", { alt: `Filter ${index} under ${label(jobs, job)}`, width: PICTURE_PX, height: PICTURE_PX });
  showResult(image, "src", url);
  const link = element("a", {}, "picture");
  showResult(link, "href", url);
  return element("td", { class: `compared ${state}` }, image,
    element("span", { class: "loss" }, `loss ${entry.loss.toFixed(3)}`), " ",
    element("span", { class: `marker marker-${state}` }, state), " · ", link);
}

// Shows the comparison the path names and returns true, or returns false for any other path.
export function routeCompare() {
  const inCompare = location.pathname === "/compare";
  $("compare").hidden = !inCompare;
  if (!inCompare) {
    stopComparing();
    return false;
  }
  const query = new URLSearchParams(location.search);
  const ids = [query.get("a"), query.get("b")];
  if (ids.some((id) => !id)) {
    stopComparing();
    $("compare-error-line").textContent = "Name two jobs: /compare?a=<job id>&b=<job id>.";
    return true;
  }
  openCompare(ids);
  return true;
}
