// Talking to the API, for every view of the page: requests with the token (asked for on a 401 and
// kept in sessionStorage only: gone when the tab closes, no cookie, no localStorage), errors as
// ApiError, and result pictures as URLs an <img> can load.

import { $ } from "./dom.js";

export const POLL_MS = 1000;
// While a job's event stream is open, its events prompt each poll; this one only backs them up.
export const STREAM_BACKSTOP_MS = 5000;
const TOKEN_KEY = "filterviz-token";
export const FINISHED = new Set(["succeeded", "failed", "canceled"]);

export class ApiError extends Error {
  constructor(status, body) {
    const error = body?.error ?? {};
    super(error.message ?? `HTTP ${status}`);
    this.status = status;
    this.problems = error.problems ?? [];
  }
}

// ---- the token ----

let asking = null; // the pending question for a token, shared by every request that got a 401

function authorized(options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = { Accept: "application/json", ...options.headers };
  if (token) headers.Authorization = `Bearer ${token}`;
  return { ...options, headers };
}

function askForToken(refused) {
  if (!asking) {
    asking = new Promise((resolve) => {
      const form = $("token-form");
      $("token-error").textContent = refused ? "The API refused that token; check it and try again." : "";
      $("token").value = "";
      $("token-section").hidden = false;
      $("token").focus();
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
        $("token-section").hidden = true;
        asking = null;
        resolve();
      }, { once: true });
    });
  }
  return asking;
}

// fetch with the token; on a 401, ask for a token and send the request again.
export async function authorizedFetch(path, options = {}) {
  for (;;) {
    const response = await fetch(path, authorized(options));
    if (response.status !== 401) return response;
    await askForToken(Boolean(sessionStorage.getItem(TOKEN_KEY)));
  }
}

export async function api(path, options = {}) {
  const response = await authorizedFetch(path, options);
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// Where a token is needed, images and downloads come through fetch (an <img> or a link can't send
// one) as blob: URLs, fetched once each (results don't change); without one they load straight
// from the API.
const blobs = new Map(); // result URL -> Promise of its blob: URL

async function fetchBlobUrl(url) {
  const response = await authorizedFetch(url);
  if (!response.ok) throw new ApiError(response.status, null);
  return URL.createObjectURL(await response.blob());
}

function resultUrl(url) {
  if (!sessionStorage.getItem(TOKEN_KEY)) return Promise.resolve(url);
  if (!blobs.has(url)) {
    const fetched = fetchBlobUrl(url);
    fetched.catch(() => blobs.delete(url));
    blobs.set(url, fetched);
  }
  return blobs.get(url);
}

export function showResult(node, attribute, url) {
  resultUrl(url).then((source) => node.setAttribute(attribute, source), () => node.dispatchEvent(new Event("error")));
}
