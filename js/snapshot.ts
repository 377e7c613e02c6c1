// The offline snapshot runtime: renders a widget's bundle from its inlined state with no kernel
// and no network. widgets/_base.py inlines this module (built to static/snapshot.js) as escaped
// JSON text, imports it through a Blob URL and calls mount(el, state, src, arrays).
// Sets data-rendered on the element once (a page that runs the snapshot twice draws once) and
// data-ready when the widget has rendered; a failure is written into the element as text.

type State = Record<string, unknown>;
type Listener = () => void;

/** A model with the anywidget surface the widgets use; set() notifies synchronously. */
export interface SnapshotModel {
  get(key: string): unknown;
  set(key: string, value: unknown): void;
  on(event: string, cb: Listener): void;
  off(event?: string | null, cb?: Listener | null): void;
  save_changes(): void;
  send(msg: unknown): void;
}

/** Base64 text to a DataView, as live widgets receive binary buffers. */
export function base64View(text: string): DataView {
  const bin = atob(text);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new DataView(bytes.buffer);
}

/** Encoded arrays in `state` (the keys `arrays`) with base64 `data` turned into DataViews. */
export function decodeArrays(state: State, arrays: readonly string[]): State {
  const out: State = { ...state };
  for (const key of arrays) {
    const value = out[key] as { data?: unknown } | undefined;
    if (value && typeof value.data === "string") out[key] = { ...value, data: base64View(value.data) };
  }
  return out;
}

export function snapshotModel(state: State, send: (msg: unknown) => void = () => {}): SnapshotModel {
  const listeners = new Map<string, Listener[]>();
  return {
    get: (key) => state[key],
    set: (key, value) => {
      state[key] = value;
      for (const cb of listeners.get(`change:${key}`) ?? []) cb();
    },
    on: (event, cb) => {
      listeners.set(event, [...(listeners.get(event) ?? []), cb]);
    },
    off: (event, cb) => {
      if (!event) listeners.clear();
      else if (!cb) listeners.delete(event);
      else listeners.set(event, (listeners.get(event) ?? []).filter((f) => f !== cb));
    },
    save_changes: () => {},
    send,
  };
}

function fail(el: HTMLElement, err: unknown): void {
  const p = document.createElement("pre");
  p.textContent = `mechscope snapshot failed: ${String(err)}`;
  el.appendChild(p);
}

/** Render the widget module `src` into `el` from `state`; returns the model (or null when `el`
 * is missing or was rendered already). */
export function mount(el: HTMLElement | null, state: State, src: string, arrays: readonly string[],
                      send?: (msg: unknown) => void): SnapshotModel | null {
  if (!el || el.dataset.rendered) return null;
  el.dataset.rendered = "1";
  const model = snapshotModel(decodeArrays(state, arrays), send);
  const url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
  import(/* @vite-ignore */ url)
    .then((mod: { default: { render(props: { model: SnapshotModel; el: HTMLElement }): unknown } }) => {
      el.replaceChildren();
      mod.default.render({ model, el });
      el.dataset.ready = "1";
    })
    .catch((err: unknown) => fail(el, err));
  return model;
}
