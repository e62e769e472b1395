// A job's event stream (GET /v1/jobs/{id}/events) read through fetch, so that it can carry the token
// (EventSource can't send headers). Events go to handlers[kind](data); a stream that breaks off is
// opened again after its last event's id; one that can't be opened calls handlers.unavailable(),
// and the page polls instead.

const RECONNECT_MS = 1000;

export function followJob(id, fetcher, handlers) {
  const controller = new AbortController();
  let lastId = null;

  async function open() {
    while (!controller.signal.aborted) {
      const headers = { Accept: "text/event-stream", ...(lastId ? { "Last-Event-ID": lastId } : {}) };
      let response;
      try {
        response = await fetcher(`/v1/jobs/${id}/events`, { headers, signal: controller.signal });
      } catch {
        if (controller.signal.aborted) return;
        response = null;
      }
      if (!response?.ok) {
        handlers.unavailable?.();
        return;
      }
      try {
        for await (const event of events(response.body)) {
          if (event.id) lastId = event.id;
          handlers[event.kind]?.(event.data);
          if (event.kind === "end") return;
        }
      } catch {
        if (controller.signal.aborted) return;
      }
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
    }
  }

  open();
  return { stop: () => controller.abort() };
}

// The events of a text/event-stream body: {id, kind, data (parsed JSON)}; comments are skipped.
async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = { id: null, kind: "message", data: "" };
      for (const line of block.split("\n")) {
        const colon = line.indexOf(":");
        if (colon <= 0) continue; // a comment (":...") or a line without a field
        const [field, text] = [line.slice(0, colon), line.slice(colon + 1).replace(/^ /, "")];
        if (field === "id") event.id = text;
        else if (field === "event") event.kind = text;
        else if (field === "data") event.data += text;
      }
      if (event.data) yield { ...event, data: JSON.parse(event.data) };
    }
  }
}
