// FeatureDashboard widget: a dictionary's features (list with search and sort) and the selected
// feature's dashboard: log10 activation histogram (canvas), top / bottom logit effects (bars),
// top activating examples and quantile bands (tokens coloured by activation, the example's own
// token outlined, hover for its activation), decoder-cosine neighbours (click to go there). In
// prompt mode a token row comes first: click a token for its top features, a feature for its
// card. Python side: src/mechscope/widgets/feature_dashboard.py.
import { decode, decodeFloat, decodeOptional, type EncodedArray, type NumericArray } from "../lib/codec";
import { formatValue } from "../lib/colors";
import { h, ownKeys } from "../lib/dom";
import { sizeCanvas } from "../lib/grid";
import { onChange, viewWidget, type AnyModel } from "../lib/model";
import { alphaPaint, hoverTokens, tokenCss, tokenSpan } from "../lib/tokentext";
import { visibleToken } from "../lib/tokens";

type Maybe = EncodedArray | Record<string, never>;
type FDTraits = {
  features: EncodedArray; density: EncodedArray; max_act: EncodedArray; histogram: EncodedArray;
  hist_edges: EncodedArray; top_value: EncodedArray; top_tokens: EncodedArray; top_acts: EncodedArray;
  q_value: EncodedArray; q_tokens: EncodedArray; q_acts: EncodedArray; logit_ids: EncodedArray;
  logit_values: EncodedArray; neighbours: EncodedArray; neighbour_cos: EncodedArray;
  prompt_ids: Maybe; prompt_features: Maybe; prompt_values: Maybe;
  vocab: string[]; n_tokens: number; title: string; note: string; selected: number; prompt_token: number;
};
type FDModel = AnyModel<FDTraits>;
type Arr = { v: NumericArray; s: number[] };

const STYLE_ID = "mechscope-feature-dashboard-style-v1";
const HIST_W = 320;
const HIST_H = 90;
const LIST_MAX = 300;
const DATA = ["features", "density", "max_act", "histogram", "top_value", "top_tokens", "top_acts", "q_value",
  "q_tokens", "q_acts", "logit_ids", "logit_values", "neighbours", "neighbour_cos", "hist_edges", "vocab", "title", "note",
  "prompt_ids", "prompt_features", "prompt_values"] as const;
const CSS = `
.ms-fd { max-width: min(100%, 1100px); }
.ms-fd .ms-fd-note { color: var(--jp-warn-color0, #a15c00); font-size: 11px; margin-bottom: 4px; }
.ms-fd .ms-fd-main { display: flex; gap: 14px; align-items: flex-start; }
.ms-fd .ms-fd-side { width: 210px; flex: none; }
.ms-fd .ms-fd-list { max-height: 520px; overflow-y: auto; border: 1px solid var(--jp-border-color2, #ddd); }
.ms-fd .ms-fd-item, .ms-fd .ms-fd-nb, .ms-fd .ms-fd-pf { display: block; width: 100%; text-align: left; border: 0;
  background: none; font: inherit; font-size: 11px; padding: 2px 4px; cursor: pointer; white-space: pre; }
.ms-fd .ms-fd-item[aria-current="true"] { background: var(--jp-brand-color3, #bbdefb); }
.ms-fd .ms-fd-item:hover, .ms-fd .ms-fd-nb:hover, .ms-fd .ms-fd-pf:hover { background: var(--jp-layout-color2, #eee); }
.ms-fd .ms-fd-card { flex: 1; min-width: 0; }
.ms-fd .ms-fd-head { font-weight: 600; margin-bottom: 4px; }
.ms-fd .ms-fd-sec { font-weight: 600; font-size: 11px; margin: 8px 0 2px 0; color: var(--jp-ui-font-color2, #555); }
.ms-fd .ms-fd-logits { display: flex; gap: 16px; }
.ms-fd .ms-fd-lrow { display: flex; align-items: center; gap: 4px; font-size: 11px; height: 15px; }
.ms-fd .ms-fd-lbar { height: 10px; }
.ms-fd .ms-fd-ex { line-height: 1.7; margin: 1px 0; white-space: nowrap; overflow: hidden; }
.ms-fd .ms-fd-val { display: inline-block; width: 64px; font-family: var(--jp-code-font-family, monospace); font-size: 10px;
  color: var(--jp-ui-font-color2, #555); }
.ms-fd .ms-fd-peak { outline: 1.5px solid #d62728; outline-offset: -1px; }
.ms-fd .ms-fd-readout { min-height: 16px; font-family: var(--jp-code-font-family, monospace); font-size: 11px; white-space: pre; }
.ms-fd .ms-fd-prompt { line-height: 1.9; margin-bottom: 6px; }
.ms-fd .ms-fd-prompt .ms-tok { cursor: pointer; }
.ms-fd .ms-fd-ptok-on { outline: 2px solid var(--jp-brand-color1, #1976d2); }
${tokenCss(".ms-fd")}`;

class FeatureDashboardView {
  readonly root = h("div", "ms-root ms-fd");
  private readonly title = h("div", "ms-title");
  private readonly note = h("div", "ms-fd-note");
  private readonly prompt = h("div", "ms-fd-prompt");
  private readonly promptList = h("div", "ms-fd-plist");
  private readonly search = h("input");
  private readonly sort = h("select");
  private readonly list = h("div", "ms-fd-list");
  private readonly card = h("div", "ms-fd-card");
  private readonly readout = h("div", "ms-fd-readout");
  private a: Record<string, Arr> = {};
  private rowOf = new Map<number, number>();

  constructor(private readonly model: FDModel, el: HTMLElement) {
    this.search.type = "search";
    this.search.placeholder = "feature #";
    this.search.setAttribute("aria-label", "search features by index");
    for (const [v, t] of [["index", "sort: index"], ["density", "sort: density"], ["max", "sort: max activation"]]) {
      const o = h("option", undefined, t);
      o.value = v;
      this.sort.append(o);
    }
    this.sort.setAttribute("aria-label", "sort features");
    ownKeys(this.search, this.sort);
    this.search.addEventListener("input", () => this.drawList());
    this.sort.addEventListener("change", () => this.drawList());
    const side = h("div", "ms-fd-side");
    side.append(this.search, this.sort, this.list);
    const main = h("div", "ms-fd-main");
    main.append(side, this.card);
    this.root.append(this.title, this.note, this.prompt, this.promptList, main);
    hoverTokens(this.card, (span) => this.hover(span), () => this.readout.replaceChildren());
    el.replaceChildren(this.root);
  }

  private arr(name: keyof FDTraits): Arr {
    const enc = this.model.get(name) as EncodedArray;
    const d = name.endsWith("acts") || name.endsWith("value") || name.endsWith("values") || name === "density" ||
      name === "max_act" || name.endsWith("cos") || name === "hist_edges" ? decodeFloat(enc) : decode(enc);
    return { v: d.values, s: d.shape };
  }

  draw(): void {
    this.title.textContent = this.model.get("title");
    this.note.textContent = this.model.get("note");
    this.a = {};
    for (const name of DATA.slice(0, 15)) this.a[name] = this.arr(name);
    this.rowOf = new Map();
    const f = this.a.features.v;
    for (let r = 0; r < f.length; r++) this.rowOf.set(f[r], r);
    this.drawPrompt();
    this.drawList();
    this.drawCard();
  }

  /** Dictionary indices of the list, filtered by the search box and sorted. */
  private order(): number[] {
    const f = this.a.features.v;
    const q = this.search.value.trim();
    const rows = [...Array(f.length).keys()].filter((r) => !q || String(f[r]).startsWith(q));
    const key = this.sort.value === "density" ? this.a.density.v : this.sort.value === "max" ? this.a.max_act.v : null;
    if (key) rows.sort((x, y) => key[y] - key[x] || x - y);
    return rows;
  }

  drawList(): void {
    const f = this.a.features.v;
    const sel = this.model.get("selected");
    const rows = this.order();
    const items: HTMLElement[] = rows.slice(0, LIST_MAX).map((r) => {
      const b = h("button", "ms-fd-item",
        `#${f[r]}  d ${formatValue(this.a.density.v[r])}  max ${formatValue(this.a.max_act.v[r])}`);
      b.dataset.feature = String(f[r]);
      b.setAttribute("aria-current", String(f[r] === sel));
      b.addEventListener("click", () => this.select(f[r]));
      return b;
    });
    if (rows.length > LIST_MAX) items.push(h("div", "ms-fd-more", `${rows.length - LIST_MAX} more: search by index`));
    this.list.replaceChildren(...items);
  }

  private select(feature: number): void {
    this.model.set("selected", feature);
    this.model.save_changes();
  }

  /** The selected feature's dashboard (or why there is none). */
  drawCard(): void {
    const sel = this.model.get("selected");
    for (const b of this.list.querySelectorAll<HTMLElement>(".ms-fd-item")) {
      b.setAttribute("aria-current", String(Number(b.dataset.feature) === sel));
    }
    const r = this.rowOf.get(sel);
    this.card.dataset.feature = String(sel);
    if (r === undefined) {
      this.card.replaceChildren(h("div", "ms-fd-head", `feature ${sel}: no dashboard here (not among the features carried)`));
      return;
    }
    const head = h("div", "ms-fd-head",
      `feature ${sel} · density ${formatValue(this.a.density.v[r])} · max ${formatValue(this.a.max_act.v[r])} · ` +
      `${this.model.get("n_tokens")} tokens`);
    this.card.replaceChildren(head, this.readout, h("div", "ms-fd-sec", "activation density (log10 activation)"),
      this.histogram(r), h("div", "ms-fd-sec", "logit effects (decoder row through the unembedding)"), this.logits(r),
      h("div", "ms-fd-sec", "top activations"), this.topExamples(r), h("div", "ms-fd-sec", "quantile bands of the max"),
      this.bands(r), h("div", "ms-fd-sec", "neighbours (decoder cosine)"), this.neighbourList(r));
  }

  private histogram(r: number): HTMLCanvasElement {
    const [, bins] = this.a.histogram.s;
    const counts = this.a.histogram.v.subarray(r * bins, (r + 1) * bins);
    const edges = this.a.hist_edges.v;
    const canvas = h("canvas", "ms-fd-hist");
    const ctx = sizeCanvas(canvas, HIST_W, HIST_H);
    let peak = 0;
    let lo = bins;
    let hi = -1;
    for (let b = 0; b < bins; b++) {
      peak = Math.max(peak, counts[b]);
      if (counts[b] > 0) [lo, hi] = [Math.min(lo, b), Math.max(hi, b)];
    }
    if (hi < 0) [lo, hi] = [0, bins - 1];
    lo = Math.max(0, lo - 2);
    hi = Math.min(bins - 1, hi + 2);
    const bw = HIST_W / (hi - lo + 1);
    ctx.fillStyle = "rgb(76,120,168)";
    for (let b = lo; b <= hi; b++) {
      const bh = peak ? (counts[b] / peak) * (HIST_H - 14) : 0;
      ctx.fillRect((b - lo) * bw + 0.5, HIST_H - 12 - bh, Math.max(1, bw - 1), bh);
    }
    ctx.fillStyle = "#555";
    ctx.font = "9px sans-serif";
    ctx.fillText(`1e${edges[lo].toFixed(1)}`, 0, HIST_H - 2);
    const right = `1e${edges[hi + 1].toFixed(1)}`;
    ctx.fillText(right, HIST_W - ctx.measureText(right).width, HIST_H - 2);
    canvas.dataset.lo = String(lo);
    canvas.dataset.hi = String(hi);
    canvas.dataset.peak = String(peak);
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `histogram of log10 activation, bins ${lo}..${hi}, peak count ${peak}`);
    return canvas;
  }

  private logits(r: number): HTMLElement {
    const [, n2] = this.a.logit_values.s;
    const n = n2 / 2;
    const ids = this.a.logit_ids.v;
    const vals = this.a.logit_values.v;
    let peak = 1e-12;
    for (let k = 0; k < n2; k++) peak = Math.max(peak, Math.abs(vals[r * n2 + k]));
    const col = (from: number, colour: string, cls: string): HTMLElement => {
      const box = h("div", cls);
      for (let k = from; k < from + n; k++) {
        const v = vals[r * n2 + k];
        const bar = h("span", "ms-fd-lbar");
        bar.style.width = `${Math.round((Math.abs(v) / peak) * 80)}px`;
        bar.style.background = colour;
        const row = h("div", "ms-fd-lrow");
        row.append(bar, h("span", "ms-fd-ltok", visibleToken(this.token(ids[r * n2 + k]))), h("span", "ms-fd-lval", formatValue(v)));
        box.append(row);
      }
      return box;
    };
    const box = h("div", "ms-fd-logits");
    box.append(col(n, "rgb(76,120,168)", "ms-fd-neg"), col(0, "rgb(245,133,24)", "ms-fd-pos"));
    return box;
  }

  private token(id: number): string {
    return id > 0 ? this.model.get("vocab")[id - 1] ?? "" : "";
  }

  /** One example: its value, then its context tokens coloured by activation, the middle one outlined. */
  private example(tokens: NumericArray, acts: Float32Array, base: number, width: number, value: number,
                  peak: number): HTMLElement {
    const line = h("div", "ms-fd-ex");
    line.append(h("span", "ms-fd-val", formatValue(value)));
    const paint = alphaPaint(peak);
    for (let k = 0; k < width; k++) {
      const id = tokens[base + k];
      if (!id) continue;
      const span = tokenSpan(this.token(id), acts[base + k], paint);
      if (k === (width - 1) / 2) span.classList.add("ms-fd-peak");
      line.append(span);
    }
    return line;
  }

  private topExamples(r: number): HTMLElement {
    const [, k, w] = this.a.top_tokens.s;
    const box = h("div", "ms-fd-top");
    const peak = this.a.max_act.v[r] || 1;
    const acts = this.a.top_acts.v as Float32Array;
    for (let i = 0; i < k; i++) {
      const v = this.a.top_value.v[r * k + i];
      if (v > 0) box.append(this.example(this.a.top_tokens.v, acts, (r * k + i) * w, w, v, peak));
    }
    if (!box.childElementCount) box.append(h("div", undefined, "never fires on these texts"));
    return box;
  }

  private bands(r: number): HTMLElement {
    const [, q, p, w] = this.a.q_tokens.s;
    const box = h("div", "ms-fd-bands");
    const peak = this.a.max_act.v[r] || 1;
    const acts = this.a.q_acts.v as Float32Array;
    for (let b = q - 1; b >= 0; b--) {
      const lines: HTMLElement[] = [];
      for (let i = 0; i < p; i++) {
        const slot = (r * q + b) * p + i;
        if (this.a.q_tokens.v[slot * w + (w - 1) / 2]) {
          lines.push(this.example(this.a.q_tokens.v, acts, slot * w, w, this.a.q_value.v[slot], peak));
        }
      }
      if (!lines.length) continue;
      const band = h("details", "ms-fd-band");
      band.open = b >= q - 2;
      band.append(h("summary", undefined, `${(b / q).toFixed(1)} - ${((b + 1) / q).toFixed(1)} of max (${lines.length})`), ...lines);
      box.append(band);
    }
    return box;
  }

  private neighbourList(r: number): HTMLElement {
    const [, n] = this.a.neighbours.s;
    const box = h("div", "ms-fd-nbs");
    for (let i = 0; i < n; i++) {
      const f = this.a.neighbours.v[r * n + i];
      const here = this.rowOf.has(f);
      const b = h("button", "ms-fd-nb", `#${f}  cos ${formatValue(this.a.neighbour_cos.v[r * n + i])}${here ? "" : "  (not carried)"}`);
      b.dataset.feature = String(f);
      b.addEventListener("click", () => this.select(f));
      box.append(b);
    }
    return box;
  }

  private hover(span: HTMLElement): void {
    const tok = h("span", "ms-fd-rtok", span.textContent ?? "");
    this.readout.replaceChildren("\"", tok, `" activation ${formatValue(Number(span.dataset.act))}`);
  }

  /** Prompt mode: the prompt's tokens (coloured by their strongest feature), the chosen token's features. */
  private drawPrompt(): void {
    const ids = decodeOptional(this.model.get("prompt_ids"));
    const featsEnc = this.model.get("prompt_features");
    if (!ids || !("data" in featsEnc)) {
      this.prompt.replaceChildren();
      this.promptList.replaceChildren();
      return;
    }
    const feats = decode(featsEnc as EncodedArray);
    const vals = decodeFloat(this.model.get("prompt_values") as EncodedArray).values;
    const top = feats.shape[1];
    let peak = 1e-12;
    for (let t = 0; t < ids.length; t++) peak = Math.max(peak, vals[t * top]);
    const paint = alphaPaint(peak);
    const chosen = this.model.get("prompt_token");
    const spans = [...Array(ids.length).keys()].map((t) => {
      const span = tokenSpan(this.token(ids[t]), vals[t * top], paint);
      span.dataset.pos = String(t);
      span.classList.toggle("ms-fd-ptok-on", t === chosen);
      span.addEventListener("click", () => {
        this.model.set("prompt_token", t);
        this.model.save_changes();
      });
      return span;
    });
    this.prompt.replaceChildren(h("div", "ms-fd-sec", "prompt: click a token for its features"), ...spans);
    this.promptFeatures(feats.values, vals, top, chosen);
  }

  private promptFeatures(feats: NumericArray, vals: Float32Array, top: number, t: number): void {
    const n = this.prompt.querySelectorAll(".ms-tok").length;
    if (t < 0 || t >= n) {
      this.promptList.replaceChildren();
      return;
    }
    const items: HTMLElement[] = [h("div", "ms-fd-sec", `features on token ${t}`)];
    for (let k = 0; k < top; k++) {
      const f = feats[t * top + k];
      if (f < 0) continue;
      const b = h("button", "ms-fd-pf", `#${f}  ${formatValue(vals[t * top + k])}`);
      b.dataset.feature = String(f);
      b.addEventListener("click", () => this.select(f));
      items.push(b);
    }
    if (items.length === 1) items.push(h("div", undefined, "no feature fires here"));
    this.promptList.replaceChildren(...items);
  }
}

export default viewWidget<FDTraits, FeatureDashboardView>([STYLE_ID, CSS], (model, el) => new FeatureDashboardView(model, el), DATA,
  (model, view) => [onChange(model, ["selected"], () => { view.drawList(); view.drawCard(); }),
    onChange(model, ["prompt_token"], () => view.draw())]);
