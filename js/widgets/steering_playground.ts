// SteeringPlayground widget: a coefficient slider and a prompt box; the unsteered (coefficient 0)
// and steered continuations side by side, tokens that differ highlighted. Live (kernel): the
// slider is debounced and each settled position is sent as {kind: "generate", id, prompt,
// coefficient}; results come back in the `results` trait (a cache keyed by prompt and
// coefficient, so moving back is instant) and progress in `status`, shown when it names the
// view's newest request id (js/lib/request.ts). Offline snapshot (no kernel, `live` false): the
// slider snaps to the precomputed coefficients.
// Python side: src/mechscope/widgets/steering_playground.py.
import { ensureWidgetStyle, h, ownKeys } from "../lib/dom";
import { disposeAll, onChange, type AnyModel, type RenderProps } from "../lib/model";
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

/** The slider's range, step, tick marks and position. */
interface SliderSetup {
  min: number;
  max: number;
  step: number;
  ticks: number[];
  value: number;
}

class PlaygroundView {
  readonly root = h("div", "ms-root ms-steer");
  private readonly title = h("div", "ms-title");
  private readonly promptBox = h("textarea", "ms-steer-prompt");
  private readonly goButton = h("button", "ms-steer-go", "Generate");
  private readonly slider = h("input", "ms-steer-slider");
  private readonly ticks = h("datalist");
  private readonly lowEnd = h("span", "ms-steer-end");
  private readonly highEnd = h("span", "ms-steer-end");
  private readonly readout = h("output", "ms-steer-readout");
  private readonly status = h("span", "ms-steer-status");
  private readonly note = h("div", "ms-note ms-steer-note");
  private readonly baseHead = h("div", "ms-steer-head");
  private readonly baseText = h("div", "ms-steer-text");
  private readonly steerHead = h("div", "ms-steer-head");
  private readonly steerText = h("div", "ms-steer-text");
  private readonly legend = h("div", "ms-steer-legend");
  private readonly requests: Requests<GenerateMsg>;
  private curPrompt: string;
  private curCoef: number;
  private cache = new Map<string, Result>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private replyTimer: ReturnType<typeof setTimeout> | null = null;
  private shown: { base: Result | null; steered: Result | null } = { base: null, steered: null };

  constructor(private readonly model: AnyModel<PlaygroundTraits>, private readonly el: HTMLElement) {
    this.requests = new Requests<GenerateMsg>(model);
    this.curPrompt = model.get("prompt") ?? "";
    this.curCoef = normCoef(model.get("coefficient") ?? 0);
    const uid = `ms-steer-${++viewCount}-${Math.random().toString(36).slice(2, 8)}`;
    this.root.append(this.title, this.promptRow(uid), this.sliderRow(uid), this.note, this.panes(), this.legend);
    // Keys pressed in the controls are theirs, not JupyterLab's notebook shortcuts (arrows would
    // move the cell selection, Shift+Enter run the cell). Lumino skips an element carrying this
    // attribute; it must be on the focused element itself, since shortcut selectors such as
    // ".jp-Notebook.jp-mod-commandMode :focus" match the focused control directly.
    ownKeys(this.promptBox, this.goButton, this.slider);
    el.replaceChildren(this.root);
    this.listen();
  }

  private promptRow(uid: string): HTMLElement {
    const row = h("div", "ms-steer-row");
    const label = h("label", undefined, "prompt");
    this.promptBox.id = `${uid}-prompt`;
    this.promptBox.rows = 2;
    this.promptBox.spellcheck = false;
    label.htmlFor = this.promptBox.id;
    this.goButton.type = "button";
    row.append(label, this.promptBox, this.goButton);
    return row;
  }

  private sliderRow(uid: string): HTMLElement {
    const row = h("div", "ms-steer-row");
    const label = h("label", undefined, "coefficient");
    this.slider.type = "range";
    this.slider.id = `${uid}-coef`;
    label.htmlFor = this.slider.id;
    this.ticks.id = `${uid}-ticks`;
    this.slider.setAttribute("list", this.ticks.id);
    this.readout.htmlFor.add(this.slider.id);
    this.status.setAttribute("role", "status");
    this.status.setAttribute("aria-live", "polite");
    row.append(label, this.readout, this.lowEnd, this.slider, this.highEnd, this.status, this.ticks);
    return row;
  }

  private panes(): HTMLElement {
    const panes = h("div", "ms-steer-panes");
    const basePane = h("section", "ms-steer-pane ms-steer-base");
    basePane.append(this.baseHead, this.baseText);
    const steerPane = h("section", "ms-steer-pane ms-steer-steered");
    steerPane.append(this.steerHead, this.steerText);
    panes.append(basePane, steerPane);
    return panes;
  }

  private live(): boolean {
    return !!this.model.get("live");
  }

  private stops(): number[] {
    return (this.model.get("coefficients") ?? []).map(normCoef);
  }

  loadCache(): void {
    this.cache = new Map();
    for (const r of this.model.get("results") ?? []) this.cache.set(keyOf(r.prompt, r.coefficient), r);
  }

  /** The offline slider moves over indices into the precomputed coefficients. */
  private snapIndex(c: number): number {
    const s = this.stops();
    let best = 0;
    for (let i = 1; i < s.length; i++) if (Math.abs(s[i] - c) < Math.abs(s[best] - c)) best = i;
    return best;
  }

  private sliderValue(): number {
    if (this.live()) return normCoef(this.slider.valueAsNumber);
    return this.stops()[Math.round(this.slider.valueAsNumber)] ?? 0;
  }

  /** Live: the coefficient itself, from min to max. Offline: an index into the precomputed
   * coefficients (the current position snapped to the nearest). */
  private sliderSetup(): SliderSetup {
    const s = this.stops();
    if (this.live()) {
      return { min: this.model.get("min"), max: this.model.get("max"), step: this.model.get("step"), ticks: s, value: this.curCoef };
    }
    this.curPrompt = this.model.get("sweep_prompt") || this.curPrompt;
    this.curCoef = s[this.snapIndex(this.curCoef)] ?? 0;
    return { min: 0, max: Math.max(0, s.length - 1), step: 1, ticks: s.map((_, i) => i), value: this.snapIndex(this.curCoef) };
  }

  setupControls(): void {
    const live = this.live();
    const s = this.stops();
    this.title.textContent = this.model.get("title") ?? "";
    const set = this.sliderSetup();
    this.slider.min = String(set.min);
    this.slider.max = String(set.max);
    this.slider.step = String(set.step);
    this.slider.value = String(set.value);
    this.lowEnd.textContent = fmtCoef(live ? set.min : s[0] ?? 0);
    this.highEnd.textContent = fmtCoef(live ? set.max : s[s.length - 1] ?? 0);
    this.ticks.replaceChildren(...set.ticks.map((v) => {
      const o = h("option");
      o.value = String(v);
      return o;
    }));
    this.promptBox.readOnly = !live;
    this.goButton.disabled = !live;
    this.note.textContent = live
      ? "live: arrow keys / Page Up / Page Down / Home / End move the slider; Enter in the prompt box (or Generate) regenerates; Shift+Enter adds a line"
      : `live regeneration needs a kernel: the slider snaps to the precomputed coefficients ${s.map(fmtCoef).join(", ")}`;
    this.promptBox.value = this.curPrompt;
    this.root.dataset.live = live ? "1" : "0";
  }

  private statusText(ready: boolean): [string, string] {
    if (ready) return ["ready", ""];
    if (!this.live()) return ["missing", "not precomputed (live regeneration needs a kernel)"];
    if (this.timer !== null) return ["pending", "…"];
    const st = this.model.get("status") ?? {};
    const mine = this.requests.answers(st, "client_id");
    if (mine && st.state === "error") return ["error", `error: ${st.message ?? ""}`];
    if (!mine && this.requests.waited() >= NO_REPLY_MS)
      return ["generating", "generating… (no reply from the kernel yet: busy, or not running?)"];
    return ["generating", "generating…"];
  }

  draw(): void {
    const { curPrompt, curCoef } = this;
    const base = this.cache.get(keyOf(curPrompt, 0)) ?? null;
    const steered = this.cache.get(keyOf(curPrompt, curCoef)) ?? null;
    const shown = this.shown;
    if (base) shown.base = base;
    else if (shown.base && shown.base.prompt !== curPrompt) shown.base = null;
    if (steered) shown.steered = steered;
    else if (shown.steered && shown.steered.prompt !== curPrompt) shown.steered = null;
    this.readout.textContent = fmtCoef(curCoef);
    this.slider.setAttribute("aria-valuetext", `coefficient ${fmtCoef(curCoef)}`);
    this.baseHead.textContent = "unsteered (coefficient 0)";
    const sc = shown.steered ? normCoef(shown.steered.coefficient) : curCoef;
    this.steerHead.textContent = `steered (coefficient ${fmtCoef(sc)})${steered ? "" : " — updating"}`;
    fillPane(this.baseText, shown.base, shown.steered);
    const differ = fillPane(this.steerText, shown.steered, shown.base);
    this.baseText.classList.toggle("ms-stale", !base);
    this.steerText.classList.toggle("ms-stale", !steered);
    const [state, text] = this.statusText(!!(base && steered));
    this.root.dataset.state = state;
    this.root.dataset.coefficient = String(curCoef);
    this.status.textContent = text;
    this.legend.replaceChildren();
    if (base && steered) {
      if (curCoef === 0) this.legend.append("coefficient 0 is the unsteered text");
      else {
        const n = Math.max(base.tokens.length, steered.tokens.length);
        this.legend.append(h("span", "ms-tok ms-diff", "highlighted"), ` tokens differ from the other side: ${differ} of ${n} new tokens`);
      }
    }
    this.el.dataset.msReady = "1";
  }

  private send(): void {
    this.timer = null;
    this.model.set("prompt", this.curPrompt);
    this.model.set("coefficient", this.curCoef);
    this.model.save_changes();
    this.requests.send({ kind: "generate", prompt: this.curPrompt, coefficient: this.curCoef });
    if (this.replyTimer !== null) clearTimeout(this.replyTimer);
    this.replyTimer = setTimeout(() => {
      this.replyTimer = null;
      this.draw();
    }, NO_REPLY_MS);
    this.draw();
  }

  schedule(delay: number): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.send(), delay);
  }

  /** Whether both panes of the current position are cached. */
  cached(): boolean {
    return this.cache.has(keyOf(this.curPrompt, 0)) && this.cache.has(keyOf(this.curPrompt, this.curCoef));
  }

  private submitPrompt(): void {
    if (!this.live()) return;
    const p = this.promptBox.value;
    if (p.trim() === "") {
      this.root.dataset.state = "error";
      this.status.textContent = "error: the prompt is empty";
      return;
    }
    this.curPrompt = p;
    this.schedule(0);
    this.draw();
  }

  private listen(): void {
    this.slider.addEventListener("input", () => {
      this.curCoef = this.sliderValue();
      if (this.live()) this.schedule(DEBOUNCE_MS);
      else {
        this.model.set("coefficient", this.curCoef);
        this.model.save_changes();
      }
      this.draw();
    });
    this.goButton.addEventListener("click", () => this.submitPrompt());
    this.promptBox.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this.submitPrompt();
      }
    });
  }

  /** Python (or another view) moved the coefficient: follow it. */
  onCoef(): void {
    const c = normCoef(this.model.get("coefficient") ?? 0);
    if (c === this.curCoef || !this.live()) return;
    this.curCoef = c;
    this.slider.value = String(c);
    this.requests.forget();
    this.draw();
  }

  /** Python (or another view) moved the prompt: follow it. */
  onPrompt(): void {
    const p = this.model.get("prompt") ?? "";
    if (p === this.curPrompt || !this.live()) return;
    this.curPrompt = p;
    this.promptBox.value = p;
    this.requests.forget();
    this.draw();
  }

  dispose(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.replyTimer !== null) clearTimeout(this.replyTimer);
  }
}

/** Fill a pane with `r`'s prompt and new tokens, marking those that differ from `other`;
 * returns how many differ. */
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

function render({ model, el }: RenderProps<PlaygroundTraits>): () => void {
  ensureWidgetStyle(STYLE_ID, CSS);
  const view = new PlaygroundView(model, el);
  view.loadCache();
  view.setupControls();
  view.draw();
  // a live view whose position is not cached (e.g. shown again after a restart) asks at once
  if (model.get("live") && !view.cached()) view.schedule(0);
  const setup = ["live", "coefficients", "min", "max", "step", "title"] as const;
  return disposeAll(
    onChange(model, ["results"], () => {
      view.loadCache();
      view.draw();
    }),
    onChange(model, ["status"], () => view.draw()),
    onChange(model, ["coefficient"], () => view.onCoef()),
    onChange(model, ["prompt"], () => view.onPrompt()),
    onChange(model, setup, () => {
      view.setupControls();
      view.draw();
    }),
    () => view.dispose(),
  );
}

export default { render };
