// Superposition widget: a toy model's W^T W grid, per-feature norm bars coloured by
// superposition, and the phase diagram (features x sparsity coloured by dimensionality).
// Python side: src/mechscope/widgets/superposition.py.
import { decodeFloat, type EncodedArray } from "../lib/codec";
import { colorBarCanvas, colorTable, formatValue, type Range } from "../lib/colors";
import { choiceSelect, h, ownKeys } from "../lib/dom";
import { axisLabels, cellAtEvent, cellColour, paintCells, placeBox, sizeCanvas, Tooltip, type RGB } from "../lib/grid";
import { viewWidget, type AnyModel } from "../lib/model";

type SupTraits = {
  gram: EncodedArray;
  norms: EncodedArray;
  superposition: EncodedArray;
  dimensionality: EncodedArray;
  dim_mean: EncodedArray;
  dim_low: EncodedArray;
  dim_high: EncodedArray;
  norm_mean: EncodedArray;
  loss: EncodedArray;
  importance: EncodedArray;
  sparsities: number[];
  seeds: number[];
  feature_labels: string[];
  n_hidden: number;
  sparsity_index: number;
  seed_index: number;
  title: string;
  hovered: string[];
};

const STYLE_ID = "mechscope-superposition-style-v1";
const DATA = ["gram", "norms", "superposition", "dimensionality", "dim_mean", "dim_low", "dim_high", "norm_mean",
  "loss", "importance", "sparsities", "seeds", "feature_labels", "n_hidden", "sparsity_index", "seed_index",
  "title"] as const;
const CSS = `
.ms-sup .ms-sup-head { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; margin-bottom: 6px; }
.ms-sup select { font: inherit; color: var(--jp-ui-font-color1, #1f1f1f);
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bbb); border-radius: 2px; }
.ms-sup .ms-sup-panels { display: flex; gap: 18px; align-items: flex-start; flex-wrap: wrap; }
.ms-sup .ms-sup-panel { display: flex; flex-direction: column; gap: 3px; }
.ms-sup .ms-sup-body { display: flex; gap: 4px; align-items: flex-start; }
.ms-sup .ms-sup-stage { position: relative; line-height: 0; }
.ms-sup .ms-rowlabels div { white-space: pre; overflow: hidden; max-width: 90px; font-size: 10px; }
.ms-sup .ms-collabels div { font-size: 10px; max-height: 60px; }
.ms-sup .ms-cursor { position: absolute; pointer-events: none; box-sizing: border-box;
  border: 2px solid var(--jp-brand-color1, #1976d2); display: none; }
`;
const MAX_PANEL = 320; // CSS px of the gram grid and the phase diagram's height
const BAR_W = 160; // CSS px of a norm of BAR_MAX
const BAR_MAX = 1.25;
const SUP_MAX = 1; // superposition at the top of the bars' scale (and above)
const SUP_TOP = 200; // the bars use magma's entries 0..SUP_TOP: its near-white end vanishes on white

/** Magma from black to orange (entries 0..SUP_TOP stretched to 256), readable on white and dark. */
function barTable(): Uint8ClampedArray {
  const full = colorTable("magma");
  const out = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const k = Math.round((i * SUP_TOP) / 255) * 3;
    out.set(full.subarray(k, k + 3), i * 3);
  }
  return out;
}

function fmt(v: number): string {
  return formatValue(v);
}

class SupView {
  readonly root = h("div", "ms-root ms-sup");
  private readonly title = h("div", "ms-title");
  private readonly spSelect: HTMLSelectElement;
  private readonly seedSelect: HTMLSelectElement;
  private readonly info = h("span", "ms-note");
  private readonly gram = h("canvas", "ms-canvas");
  private readonly bars = h("canvas", "ms-canvas");
  private readonly phase = h("canvas", "ms-canvas");
  private readonly phaseCursor = h("div", "ms-cursor");
  private readonly gramRows = h("div", "ms-rowlabels");
  private readonly barRows = h("div", "ms-rowlabels");
  private readonly phaseRows = h("div", "ms-rowlabels");
  private readonly phaseCols = h("div", "ms-collabels");
  private readonly gramBar = h("div", "ms-colorbar");
  private readonly phaseBar = h("div", "ms-colorbar");
  private readonly supBar = h("div", "ms-colorbar");
  private readonly tip = new Tooltip(this.root);
  private S = 0;
  private K = 0;
  private n = 0;
  private cell = 8;
  private phaseW = 8;

  constructor(private readonly model: AnyModel<SupTraits>, el: HTMLElement) {
    this.spSelect = choiceSelect("sparsity", []).select;
    this.seedSelect = choiceSelect("seed", []).select;
    const head = h("div", "ms-sup-head");
    const spLabel = h("label", undefined, "sparsity S ");
    spLabel.append(this.spSelect);
    const seedLabel = h("label", undefined, "seed ");
    seedLabel.append(this.seedSelect);
    head.append(this.title, spLabel, seedLabel, this.info);
    for (const [c, name] of [[this.gram, "gram"], [this.bars, "bars"], [this.phase, "phase"]] as const) {
      c.dataset.panel = name;
      c.setAttribute("role", "img");
    }
    this.phase.tabIndex = 0; // Left / Right step through the sparsities
    ownKeys(this.phase);
    const stage = h("div", "ms-sup-stage");
    stage.append(this.phase, this.phaseCursor);
    const phaseInner = h("div");
    phaseInner.append(stage, this.phaseCols);
    const panels = h("div", "ms-sup-panels");
    panels.append(
      this.panel("W\u1d40W of the selected model", this.gramRows, this.gram, this.gramBar),
      this.panel("\u2016W\u1d62\u2016 per feature (line: 1), colour = superposition", this.barRows, this.bars, this.supBar),
      this.panel("dimensionality (mean over seeds) vs sparsity; click a column or use \u2190 \u2192", this.phaseRows, phaseInner, this.phaseBar),
    );
    this.root.append(head, panels, h("div", "ms-note", "hover any cell or bar for its values"), this.tip.el);
    el.replaceChildren(this.root);
    this.listen();
  }

  private panel(caption: string, rows: HTMLElement, body: HTMLElement, bar?: HTMLElement): HTMLElement {
    const p = h("div", "ms-sup-panel");
    const b = h("div", "ms-sup-body");
    b.append(rows, body);
    if (bar) b.append(bar);
    p.append(h("div", "ms-note", caption), b);
    return p;
  }

  private arr(name: keyof SupTraits & string): Float32Array {
    return decodeFloat(this.model.get(name) as EncodedArray).values;
  }

  private sel(): [number, number] {
    const i = Math.max(0, Math.min(this.S - 1, this.model.get("sparsity_index")));
    const k = Math.max(0, Math.min(this.K - 1, this.model.get("seed_index")));
    return [i, k];
  }

  private fillSelects(): void {
    const sp = this.model.get("sparsities");
    const seeds = this.model.get("seeds");
    const opts = (sel: HTMLSelectElement, texts: string[]) => sel.replaceChildren(...texts.map((t, i) => {
      const o = h("option", undefined, t);
      o.value = String(i);
      return o;
    }));
    opts(this.spSelect, sp.map((s) => `${s} (1-S = ${+(1 - s).toPrecision(3)})`));
    opts(this.seedSelect, seeds.map(String));
    const [i, k] = this.sel();
    this.spSelect.value = String(i);
    this.seedSelect.value = String(k);
  }

  draw(): void {
    const shape = decodeFloat(this.model.get("norms")).shape;
    [this.S, this.K, this.n] = shape;
    this.tip.hide(); // a readout of what was shown before would mislead
    this.title.textContent = this.model.get("title");
    this.fillSelects();
    const [i, k] = this.sel();
    const norms = this.arr("norms");
    const base = (i * this.K + k) * this.n;
    let rep = 0;
    for (let f = 0; f < this.n; f++) if (norms[base + f] > 0.5) rep++;
    const loss = this.arr("loss")[i * this.K + k];
    this.info.textContent = `${rep} of ${this.n} features with norm > 0.5 in ${this.model.get("n_hidden")} dims; loss ${fmt(loss)}`;
    this.cell = Math.max(4, Math.min(22, Math.floor(MAX_PANEL / Math.max(this.n, 1))));
    this.phaseW = Math.max(6, Math.min(40, Math.floor(MAX_PANEL / Math.max(this.S, 1))));
    const labels = this.model.get("feature_labels");
    for (const box of [this.gramRows, this.barRows, this.phaseRows]) axisLabels(box, labels, this.cell, "row");
    axisLabels(this.phaseCols, this.model.get("sparsities").map(String), this.phaseW, "col");
    this.drawGram(i, k);
    this.drawBars(i, k);
    this.drawPhase(i);
    this.root.dataset.sparsityIndex = String(i);
    this.root.dataset.seedIndex = String(k);
  }

  private drawGram(i: number, k: number): void {
    const { n, cell } = this;
    const g = this.arr("gram");
    let m = 0;
    for (let j = 0; j < g.length; j++) if (Number.isFinite(g[j])) m = Math.max(m, Math.abs(g[j]));
    const range: Range = { lo: -(m || 1), hi: m || 1 };
    const table = colorTable("diverging");
    const base = (i * this.K + k) * n * n;
    const ctx = sizeCanvas(this.gram, n * cell, n * cell);
    paintCells(ctx, { rows: n, cols: n, cellW: cell, cellH: cell, colour: (r, c) => cellColour(g[base + r * n + c], table, range) });
    this.gramBar.replaceChildren(h("div", undefined, fmt(range.hi)), colorBarCanvas(table, n * cell),
      h("div", undefined, fmt(range.lo)));
    this.gram.setAttribute("aria-label", `W transpose W, ${n} by ${n} features`);
  }

  private drawBars(i: number, k: number): void {
    const { n, cell } = this;
    const norms = this.arr("norms");
    const sup = this.arr("superposition");
    const base = (i * this.K + k) * n;
    const table = barTable();
    const ctx = sizeCanvas(this.bars, BAR_W, n * cell);
    ctx.clearRect(0, 0, BAR_W, n * cell);
    for (let f = 0; f < n; f++) {
      const rgb: RGB = cellColour(Math.min(SUP_MAX, sup[base + f]), table, { lo: 0, hi: SUP_MAX }) ?? [128, 128, 128];
      const w = Math.max(1, Math.min(BAR_W, (norms[base + f] / BAR_MAX) * BAR_W));
      ctx.fillStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
      ctx.fillRect(0, f * cell + 1, w, Math.max(1, cell - 2));
    }
    ctx.fillStyle = "rgba(128,128,128,0.7)";
    ctx.fillRect(BAR_W / BAR_MAX, 0, 1, n * cell); // norm 1
    this.supBar.replaceChildren(h("div", undefined, `\u2265 ${SUP_MAX}`), colorBarCanvas(table, n * cell),
      h("div", undefined, "0"), h("div", undefined, "superposition"));
    this.bars.setAttribute("aria-label", `norm of each of ${n} features`);
  }

  private drawPhase(i: number): void {
    const { n, S, cell, phaseW } = this;
    const dim = this.arr("dim_mean");
    const table = colorTable("viridis");
    const ctx = sizeCanvas(this.phase, S * phaseW, n * cell);
    paintCells(ctx, {
      rows: n, cols: S, cellW: phaseW, cellH: cell,
      colour: (f, s) => cellColour(Math.min(1, dim[s * n + f]), table, { lo: 0, hi: 1 }),
    });
    placeBox(this.phaseCursor, i * phaseW, 0, phaseW, n * cell, true);
    this.phaseBar.replaceChildren(h("div", undefined, "1"), colorBarCanvas(table, n * cell), h("div", undefined, "0"),
      h("div", undefined, "D\u1d62"));
    this.phase.setAttribute("aria-label", `feature dimensionality, ${n} features by ${S} sparsities`);
  }

  private tipText(panel: string, r: number, c: number): string {
    const labels = this.model.get("feature_labels");
    const sp = this.model.get("sparsities");
    const [i, k] = this.sel();
    const name = (f: number) => JSON.stringify(labels[f] ?? String(f));
    if (panel === "gram") {
      const v = this.arr("gram")[((i * this.K + k) * this.n + r) * this.n + c];
      return `W\u1d40W[${name(r)}, ${name(c)}] = ${fmt(v)}\nS = ${sp[i]}, seed ${this.model.get("seeds")[k]}`;
    }
    if (panel === "bars") {
      const j = (i * this.K + k) * this.n + r;
      return [`feature ${name(r)}  importance ${fmt(this.arr("importance")[r])}`,
        `norm ${fmt(this.arr("norms")[j])}`, `superposition ${fmt(this.arr("superposition")[j])}`,
        `dimensionality ${fmt(this.arr("dimensionality")[j])}`].join("\n");
    }
    const j = c * this.n + r;
    return [`feature ${name(r)}  S = ${sp[c]}`,
      `dimensionality ${fmt(this.arr("dim_mean")[j])} [${fmt(this.arr("dim_low")[j])}, ${fmt(this.arr("dim_high")[j])}]`,
      `norm (mean over ${this.K} seeds) ${fmt(this.arr("norm_mean")[j])}`].join("\n");
  }

  private hit(canvas: HTMLCanvasElement, ev: MouseEvent): [string, number, number] | null {
    const panel = canvas.dataset.panel ?? "";
    const cols = panel === "gram" ? this.n : panel === "phase" ? this.S : 1;
    const cell = cellAtEvent(canvas, ev, this.n, cols);
    return cell ? [panel, cell[0], cell[1]] : null;
  }

  private setIndex(name: "sparsity_index" | "seed_index", value: number): void {
    this.model.set(name, value);
    this.model.save_changes(); // the change listener redraws
  }

  private listen(): void {
    for (const canvas of [this.gram, this.bars, this.phase]) {
      canvas.addEventListener("mousemove", (ev) => {
        const at = this.hit(canvas, ev);
        if (!at) return this.tip.hide();
        this.tip.show(this.tipText(...at), ev.clientX, ev.clientY);
        const hv = this.model.get("hovered");
        const next = at.map(String);
        if (!hv || hv.join() !== next.join()) {
          this.model.set("hovered", next);
          this.model.save_changes();
        }
      });
      canvas.addEventListener("mouseleave", () => this.tip.hide());
    }
    this.phase.addEventListener("click", (ev) => {
      const at = this.hit(this.phase, ev);
      if (at) this.setIndex("sparsity_index", at[2]);
    });
    this.phase.addEventListener("keydown", (ev) => {
      const d = ev.key === "ArrowRight" ? 1 : ev.key === "ArrowLeft" ? -1 : 0;
      if (!d) return;
      ev.preventDefault();
      const next = Math.max(0, Math.min(this.S - 1, this.sel()[0] + d));
      if (next !== this.sel()[0]) this.setIndex("sparsity_index", next);
    });
    this.spSelect.addEventListener("change", () => this.setIndex("sparsity_index", Number(this.spSelect.value)));
    this.seedSelect.addEventListener("change", () => this.setIndex("seed_index", Number(this.seedSelect.value)));
  }
}

export default viewWidget<SupTraits, SupView>([STYLE_ID, CSS], (model, el) => new SupView(model, el), DATA);
