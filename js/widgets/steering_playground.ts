// SteeringPlayground widget: a coefficient slider and a prompt box; the unsteered (coefficient 0)
// and steered continuations side by side, tokens that differ highlighted. Live (kernel): the
// slider is debounced and each settled position is sent as {kind: "generate", id, prompt,
// coefficient}; results come back in the `results` trait (a cache keyed by prompt and
// coefficient, so moving back is instant) and progress in `status`. Offline snapshot (no
// kernel, `live` false): the slider snaps to the precomputed coefficients.
// Python side: src/mechscope/widgets/steering_playground.py.
import { ensureWidgetStyle, h, ownKeys } from "../lib/dom";
import { disposeAll, onChange, type RenderProps } from "../lib/model";
import { Requests } from "../lib/request";
import { controlPictures } from "../lib/tokens";

interface Result {
  prompt: string;
  coefficient: number;
  tokens: string[];
  ids: number[];
  text: string;
  stopped_at_eos: boolean;
  precomputed: boolean;
}

interface Status {
  seq?: number;
  client_id?: number | null;
  prompt?: string;
  coefficient?: number;
  state?: "generating" | "done" | "cancelled" | "error";
  message?: string;
}

interface GenerateMsg {
  kind: "generate";
  id: number;
  prompt: string;
  coefficient: number;
}

type PlaygroundTraits = {
  prompt: string;
  sweep_prompt: string;
  title: string;
  coefficient: number;
  min: number;
  max: number;
  step: number;
  coefficients: number[];
  results: Result[];
  status: Status;
  live: boolean;
};

export const DEBOUNCE_MS = 250;
const NO_REPLY_MS = 4000; // no status from the kernel by then: say so
const STYLE_ID = "mechscope-steering-style-v1";

const CSS = `
.ms-steer { display: block; max-width: min(100%, 1100px); }
.ms-steer .ms-steer-row { display: flex; align-items: center; gap: 8px; margin: 4px 0; flex-wrap: wrap; }
.ms-steer label { font-weight: 600; min-width: 76px; }
.ms-steer textarea { font-family: var(--jp-code-font-family, monospace); font-size: 12px; flex: 1 1 420px;
  min-height: 2.6em; resize: vertical; color: var(--jp-ui-font-color1, #1f1f1f);
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bbb);
  border-radius: 2px; padding: 3px 5px; box-sizing: border-box; }
.ms-steer textarea[readonly] { color: var(--jp-ui-font-color2, #555); background: var(--jp-layout-color2, #f3f3f3); }
.ms-steer button { font: inherit; color: var(--jp-ui-font-color1, #1f1f1f); background: var(--jp-layout-color2, #eee);
  border: 1px solid var(--jp-border-color1, #bbb); border-radius: 2px; padding: 3px 10px; cursor: pointer; }
.ms-steer button:disabled { opacity: 0.5; cursor: default; }
.ms-steer input[type=range] { flex: 0 1 360px; min-width: 160px; accent-color: var(--jp-brand-color1, #1976d2); }
.ms-steer textarea:focus-visible, .ms-steer button:focus-visible, .ms-steer input[type=range]:focus-visible {
  outline: 2px solid var(--jp-brand-color1, #1976d2); outline-offset: 1px; }
.ms-steer .ms-steer-end { font-size: 11px; color: var(--jp-ui-font-color2, #555); font-variant-numeric: tabular-nums; }
.ms-steer output { font-family: var(--jp-code-font-family, monospace); font-size: 13px; font-weight: 600;
  min-width: 3.5em; text-align: center; font-variant-numeric: tabular-nums; padding: 1px 4px; border-radius: 2px;
  border: 1px solid var(--jp-border-color1, #bbb); background: var(--jp-layout-color1, #fff); }
.ms-steer .ms-steer-status { font-size: 11px; color: var(--jp-ui-font-color2, #555); min-height: 1.2em; }
.ms-steer[data-state=error] .ms-steer-status { color: var(--jp-error-color1, #d32f2f); }
.ms-steer .ms-steer-panes { display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); gap: 10px; margin-top: 6px; }
.ms-steer .ms-steer-pane { border: 1px solid var(--jp-border-color2, #ddd); border-radius: 3px;
  background: var(--jp-layout-color1, #fff); padding: 6px 8px; min-width: 0; }
.ms-steer .ms-steer-head { font-size: 11px; font-weight: 600; color: var(--jp-ui-font-color2, #555); margin-bottom: 4px; }
.ms-steer .ms-steer-text { font-family: var(--jp-code-font-family, monospace); font-size: 12px; line-height: 1.6;
  white-space: pre-wrap; overflow-wrap: anywhere; transition: opacity 0.15s; }
.ms-steer .ms-steer-text.ms-stale { opacity: 0.45; }
.ms-steer .ms-steer-ptext { color: var(--jp-ui-font-color2, #666); }
.ms-steer .ms-tok { border-radius: 2px; }
.ms-steer .ms-tok.ms-diff { background: rgba(245, 133, 24, 0.32); box-shadow: inset 0 -2px 0 rgba(230, 110, 0, 0.95); }
.ms-steer .ms-eos { font-size: 10px; color: var(--jp-ui-font-color2, #666); border: 1px solid var(--jp-border-color1, #bbb);
  border-radius: 2px; padding: 0 3px; margin-left: 3px; white-space: nowrap; }
.ms-steer .ms-steer-empty { color: var(--jp-ui-font-color2, #666); font-style: italic; font-family: var(--jp-ui-font-family, sans-serif); }
.ms-steer .ms-steer-legend { font-size: 11px; color: var(--jp-ui-font-color2, #555); margin-top: 4px; }
.ms-steer .ms-steer-legend .ms-tok { padding: 0 3px; }
`;

/** A coefficient as the key both sides use: 6 decimals, no negative zero. */
export function normCoef(c: number): number {
  return Math.round(c * 1e6) / 1e6 + 0;
}

export function fmtCoef(c: number): string {
  return c > 0 ? `+${c}` : String(c);
}

/** Control characters as their visible pictures (U+2400...); a newline keeps its line break
 * after a visible "↵", so a highlighted newline token can be seen. */
export function shownToken(tok: string): string {
  return controlPictures(tok, "\t\n").replace(/\n/g, "↵\n");
}

function keyOf(prompt: string, c: number): string {
  return `${normCoef(c)}\u0000${prompt}`;
}

let viewCount = 0;

function render({ model, el }: RenderProps<PlaygroundTraits>): () => void {
  ensureWidgetStyle(STYLE_ID, CSS);
  const uid = `ms-steer-${++viewCount}-${Math.random().toString(36).slice(2, 8)}`;
  const root = h("div", "ms-root ms-steer");
  const title = h("div", "ms-title");

  const promptRow = h("div", "ms-steer-row");
  const promptLabel = h("label", undefined, "prompt");
  const promptBox = h("textarea", "ms-steer-prompt");
  promptBox.id = `${uid}-prompt`;
  promptBox.rows = 2;
  promptBox.spellcheck = false;
  promptLabel.htmlFor = promptBox.id;
  const goButton = h("button", "ms-steer-go", "Generate");
  goButton.type = "button";
  promptRow.append(promptLabel, promptBox, goButton);

  const sliderRow = h("div", "ms-steer-row");
  const sliderLabel = h("label", undefined, "coefficient");
  const slider = h("input", "ms-steer-slider");
  slider.type = "range";
  slider.id = `${uid}-coef`;
  sliderLabel.htmlFor = slider.id;
  const ticks = h("datalist");
  ticks.id = `${uid}-ticks`;
  slider.setAttribute("list", ticks.id);
  const lowEnd = h("span", "ms-steer-end");
  const highEnd = h("span", "ms-steer-end");
  const readout = h("output", "ms-steer-readout");
  readout.htmlFor.add(slider.id);
  const status = h("span", "ms-steer-status");
  status.setAttribute("role", "status");
  status.setAttribute("aria-live", "polite");
  sliderRow.append(sliderLabel, readout, lowEnd, slider, highEnd, status, ticks);

  // Keys pressed in the controls are theirs, not JupyterLab's notebook shortcuts (arrows would
  // move the cell selection, Shift+Enter run the cell). Lumino skips an element carrying this
  // attribute; it must be on the focused element itself, since shortcut selectors such as
  // ".jp-Notebook.jp-mod-commandMode :focus" match the focused control directly.
  ownKeys(promptBox, goButton, slider);
  const note = h("div", "ms-note ms-steer-note");
  const panes = h("div", "ms-steer-panes");
  const basePane = h("section", "ms-steer-pane ms-steer-base");
  const baseHead = h("div", "ms-steer-head");
  const baseText = h("div", "ms-steer-text");
  basePane.append(baseHead, baseText);
  const steerPane = h("section", "ms-steer-pane ms-steer-steered");
  const steerHead = h("div", "ms-steer-head");
  const steerText = h("div", "ms-steer-text");
  steerPane.append(steerHead, steerText);
  panes.append(basePane, steerPane);
  const legend = h("div", "ms-steer-legend");
  root.append(title, promptRow, sliderRow, note, panes, legend);
  el.replaceChildren(root);

  const live = (): boolean => !!model.get("live");
  const stops = (): number[] => (model.get("coefficients") ?? []).map(normCoef);
  let curPrompt = model.get("prompt") ?? "";
  let curCoef = normCoef(model.get("coefficient") ?? 0);
  let cache = new Map<string, Result>();
  let timer: ReturnType<typeof setTimeout> | null = null;
  let replyTimer: ReturnType<typeof setTimeout> | null = null;
  const requests = new Requests<GenerateMsg>(model);
  let shown: { base: Result | null; steered: Result | null } = { base: null, steered: null };

  function loadCache(): void {
    cache = new Map();
    for (const r of model.get("results") ?? []) cache.set(keyOf(r.prompt, r.coefficient), r);
  }

  /** The offline slider moves over indices into the precomputed coefficients. */
  function snapIndex(c: number): number {
    const s = stops();
    let best = 0;
    for (let i = 1; i < s.length; i++) if (Math.abs(s[i] - c) < Math.abs(s[best] - c)) best = i;
    return best;
  }

  function sliderValue(): number {
    if (live()) return normCoef(slider.valueAsNumber);
    return stops()[Math.round(slider.valueAsNumber)] ?? 0;
  }

  function setupControls(): void {
    title.textContent = model.get("title") ?? "";
    const s = stops();
    ticks.replaceChildren();
    if (live()) {
      slider.min = String(model.get("min"));
      slider.max = String(model.get("max"));
      slider.step = String(model.get("step"));
      slider.value = String(curCoef);
      lowEnd.textContent = fmtCoef(model.get("min"));
      highEnd.textContent = fmtCoef(model.get("max"));
      for (const c of s) {
        const o = h("option");
        o.value = String(c);
        ticks.append(o);
      }
      promptBox.readOnly = false;
      goButton.disabled = false;
      note.textContent =
        "live: arrow keys / Page Up / Page Down / Home / End move the slider; Enter in the prompt box (or Generate) regenerates; Shift+Enter adds a line";
    } else {
      curPrompt = model.get("sweep_prompt") || curPrompt;
      curCoef = s[snapIndex(curCoef)] ?? 0;
      slider.min = "0";
      slider.max = String(Math.max(0, s.length - 1));
      slider.step = "1";
      slider.value = String(snapIndex(curCoef));
      lowEnd.textContent = fmtCoef(s[0] ?? 0);
      highEnd.textContent = fmtCoef(s[s.length - 1] ?? 0);
      for (let i = 0; i < s.length; i++) {
        const o = h("option");
        o.value = String(i);
        ticks.append(o);
      }
      promptBox.readOnly = true;
      goButton.disabled = true;
      note.textContent =
        `live regeneration needs a kernel: the slider snaps to the precomputed coefficients ${s.map(fmtCoef).join(", ")}`;
    }
    promptBox.value = curPrompt;
    root.dataset.live = live() ? "1" : "0";
  }

  function fillPane(box: HTMLElement, r: Result | null, other: Result | null): number {
    box.replaceChildren();
    if (!r) {
      box.append(h("span", "ms-steer-empty", "not generated yet"));
      return 0;
    }
    box.append(h("span", "ms-steer-ptext", r.prompt));
    let differ = 0;
    r.tokens.forEach((tok, j) => {
      const span = h("span", "ms-tok", shownToken(tok));
      span.dataset.i = String(j);
      if (other && (j >= other.ids.length || other.ids[j] !== r.ids[j])) {
        span.classList.add("ms-diff");
        differ++;
      }
      box.append(span);
    });
    if (r.stopped_at_eos) box.append(h("span", "ms-eos", "end of text"));
    if (r.tokens.length === 0) box.append(h("span", "ms-steer-empty", " (no new tokens)"));
    return differ;
  }

  function statusText(ready: boolean): [string, string] {
    if (ready) return ["ready", ""];
    if (!live()) return ["missing", "not precomputed (live regeneration needs a kernel)"];
    if (timer !== null) return ["pending", "…"];
    const st = model.get("status") ?? {};
    const mine = st.prompt === curPrompt && normCoef(st.coefficient ?? NaN) === curCoef;
    if (mine && st.state === "error") return ["error", `error: ${st.message ?? ""}`];
    if (!mine && requests.waited() >= NO_REPLY_MS)
      return ["generating", "generating… (no reply from the kernel yet: busy, or not running?)"];
    return ["generating", "generating…"];
  }

  function draw(): void {
    const base = cache.get(keyOf(curPrompt, 0)) ?? null;
    const steered = cache.get(keyOf(curPrompt, curCoef)) ?? null;
    if (base) shown.base = base;
    else if (shown.base && shown.base.prompt !== curPrompt) shown.base = null;
    if (steered) shown.steered = steered;
    else if (shown.steered && shown.steered.prompt !== curPrompt) shown.steered = null;
    readout.textContent = fmtCoef(curCoef);
    slider.setAttribute("aria-valuetext", `coefficient ${fmtCoef(curCoef)}`);
    baseHead.textContent = "unsteered (coefficient 0)";
    const sc = shown.steered ? normCoef(shown.steered.coefficient) : curCoef;
    steerHead.textContent = `steered (coefficient ${fmtCoef(sc)})${steered ? "" : " — updating"}`;
    fillPane(baseText, shown.base, shown.steered);
    const differ = fillPane(steerText, shown.steered, shown.base);
    baseText.classList.toggle("ms-stale", !base);
    steerText.classList.toggle("ms-stale", !steered);
    const [state, text] = statusText(!!(base && steered));
    root.dataset.state = state;
    root.dataset.coefficient = String(curCoef);
    status.textContent = text;
    legend.replaceChildren();
    if (base && steered) {
      if (curCoef === 0) legend.append("coefficient 0 is the unsteered text");
      else {
        const n = Math.max(base.tokens.length, steered.tokens.length);
        legend.append(h("span", "ms-tok ms-diff", "highlighted"), ` tokens differ from the other side: ${differ} of ${n} new tokens`);
      }
    }
    el.dataset.msReady = "1";
  }

  function send(): void {
    timer = null;
    model.set("prompt", curPrompt);
    model.set("coefficient", curCoef);
    model.save_changes();
    requests.send({ kind: "generate", prompt: curPrompt, coefficient: curCoef });
    if (replyTimer !== null) clearTimeout(replyTimer);
    replyTimer = setTimeout(() => {
      replyTimer = null;
      draw();
    }, NO_REPLY_MS);
    draw();
  }

  function schedule(delay: number): void {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(send, delay);
  }

  slider.addEventListener("input", () => {
    curCoef = sliderValue();
    if (live()) schedule(DEBOUNCE_MS);
    else {
      model.set("coefficient", curCoef);
      model.save_changes();
    }
    draw();
  });

  function submitPrompt(): void {
    if (!live()) return;
    const p = promptBox.value;
    if (p.trim() === "") {
      root.dataset.state = "error";
      status.textContent = "error: the prompt is empty";
      return;
    }
    curPrompt = p;
    schedule(0);
    draw();
  }
  goButton.addEventListener("click", submitPrompt);
  promptBox.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      submitPrompt();
    }
  });

  const onResults = () => {
    loadCache();
    draw();
  };
  const onStatus = () => draw();
  const onCoef = () => {
    const c = normCoef(model.get("coefficient") ?? 0);
    if (c === curCoef || !live()) return;
    curCoef = c;
    slider.value = String(c);
    draw();
  };
  const onPrompt = () => {
    const p = model.get("prompt") ?? "";
    if (p === curPrompt || !live()) return;
    curPrompt = p;
    promptBox.value = p;
    draw();
  };
  const onSetup = () => {
    setupControls();
    draw();
  };

  loadCache();
  setupControls();
  draw();
  // a live view whose position is not cached (e.g. shown again after a restart) asks at once
  if (live() && !(cache.has(keyOf(curPrompt, 0)) && cache.has(keyOf(curPrompt, curCoef)))) schedule(0);

  const setup = ["live", "coefficients", "min", "max", "step", "title"] as const;
  return disposeAll(
    onChange(model, ["results"], onResults),
    onChange(model, ["status"], onStatus),
    onChange(model, ["coefficient"], onCoef),
    onChange(model, ["prompt"], onPrompt),
    onChange(model, setup, onSetup),
    () => {
      if (timer !== null) clearTimeout(timer);
      if (replyTimer !== null) clearTimeout(replyTimer);
    },
  );
}

export default { render };
