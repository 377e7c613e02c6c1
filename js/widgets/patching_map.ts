// PatchingMap widget: a PatchingResult as a layers x positions (or heads) map on a diverging
// scale centred on 0. Hover / arrow keys show a cell; a click or Enter selects it: live, as a
// {kind: "select", id, cell} request that Python answers by setting `selected`, re-running that
// patch and replying through `detail` (naming the request's id: js/lib/request.ts) with the top
// tokens before and after, drawn beside the map as text; without a kernel (or a re-run
// function) it sets `selected` itself. A result over a dataset (`n_examples` > 0) shows the mean
// over its examples with the bootstrap interval on hover, an example picker (`example`) and the
// spread of the selected cell over the examples (js/lib/spread.ts) in the detail pane.
// Python side: src/mechscope/widgets/patching_map.py (+ patching_examples.py).
import { decodeFloat, decodeOptional, type EncodedArray } from "../lib/codec";
import { colorBarCanvas, colorTable, formatValue, valueRange, type Range } from "../lib/colors";
import { choiceSelect, fillColumnLabels, h, ownKeys } from "../lib/dom";
import {
  cellAtEvent, cellColour, codeFont, gridRowLabels, keyStep, moveCell, paintCells, placeBox, scrollIntoView,
  sizeCanvas, syncHovered, Tooltip, type Cell,
} from "../lib/grid";
import { onChange, viewWidget, type AnyModel } from "../lib/model";
import { answers, replyFor, Requests } from "../lib/request";
import { SPREAD_CSS, SpreadStrip, type Spread } from "../lib/spread";
import { visibleToken } from "../lib/tokens";

interface Top {
  tokens: string[];
  ids: number[];
  logits: (number | null)[];
  probs: (number | null)[];
}

interface RerunDetail {
  kind: "rerun";
  cell: number[];
  client_id: number | null;
  layer: number;
  column: number;
  column_kind: string;
  positions: number[];
  metric_name: string;
  value: number | null;
  sweep_value: number | null;
  normalized: number | null;
  clean_metric: number | null;
  corrupt_metric: number | null;
  approximation: boolean;
  before: Top;
  after: Top;
  clean: Top;
  n?: number; // over a dataset: how many examples the re-run averages ...
  example?: number; // ... and the example whose top tokens are shown
  example_text?: string;
}

interface ErrorDetail {
  kind: "error";
  cell: number[];
  client_id: number | null;
  message: string;
}

interface SelectMsg {
  kind: "select";
  id: number;
  cell: Cell;
}

type Detail = RerunDetail | ErrorDetail | Record<string, never>;

type Optional = EncodedArray | Record<string, never>;

type PatchingTraits = {
  effect: EncodedArray;
  n_examples: number;
  ci_level: number;
  dataset_name: string;
  ci_low: Optional;
  ci_high: Optional;
  norm_mean: Optional;
  norm_low: Optional;
  norm_high: Optional;
  per_example: Optional;
  clean_per_example: Optional;
  corrupt_per_example: Optional;
  example_texts: string[];
  examples_note: string;
  example: number;
  clean_metric: number | null;
  corrupt_metric: number | null;
  metric_name: string;
  title: string;
  note: string;
  positions_text: string;
  clean_prompt: string;
  corrupt_prompt: string;
  column_kind: "position" | "head" | "role";
  row_labels: string[];
  col_labels: string[];
  col_clean: string[];
  col_corrupt: string[];
  columns: number[];
  selected: number[];
  hovered: number[];
  normalized: boolean;
  can_normalize: boolean;
  live: boolean;
  offline: boolean | undefined;
  detail: Detail;
};

const STYLE_ID = "mechscope-patching-map-style-v1";
const MAX_CANVAS_W = 16000; // stay well under browsers' canvas size limits
const FIT_W = 900; // widest map drawn without narrowing cells below what their labels want
const MAX_GRID_H = 640;
const TEXT_MIN_W = 34; // draw each cell's number only when cells are at least this wide ...
const TEXT_MIN_H = 14; // ... and this tall
const DATA = ["effect", "clean_metric", "corrupt_metric", "metric_name", "row_labels", "col_labels", "col_clean",
  "col_corrupt", "columns", "column_kind", "positions_text", "clean_prompt", "corrupt_prompt", "title", "note",
  "normalized", "can_normalize", "n_examples", "ci_level", "dataset_name", "ci_low", "ci_high", "norm_mean", "norm_low",
  "norm_high", "per_example", "clean_per_example", "corrupt_per_example", "example_texts", "examples_note", "example"] as const;
const CSS = `
.ms-pmap .ms-pmap-head { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; margin-bottom: 2px; }
.ms-pmap .ms-pmap-head .ms-title { margin: 2px 0; }
.ms-pmap select { font: inherit; color: var(--jp-ui-font-color1, #1f1f1f);
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bbb); border-radius: 2px; }
.ms-pmap select:focus-visible { outline: 2px solid var(--jp-brand-color1, #1976d2); }
.ms-pmap .ms-pmap-prompts { font-family: var(--jp-code-font-family, monospace); font-size: 11px;
  color: var(--jp-ui-font-color2, #555); margin-bottom: 6px; white-space: pre-wrap; word-break: break-all; }
.ms-pmap .ms-pmap-body { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 18px; }
.ms-pmap .ms-pmap-map { display: flex; align-items: flex-start; gap: 4px; min-width: 0; max-width: 100%; }
.ms-pmap .ms-rowlabels div { text-align: right; padding-right: 4px; white-space: pre; overflow: hidden; }
.ms-pmap .ms-scroll { overflow-x: auto; overflow-y: hidden; max-width: min(calc(100vw - 200px), 900px); }
.ms-pmap .ms-canvas:focus-visible { outline-offset: -2px; }
.ms-pmap .ms-pmap-inner { position: relative; }
.ms-pmap .ms-canvas { image-rendering: auto; cursor: pointer; }
.ms-pmap .ms-collabels div { writing-mode: horizontal-tb; transform: none; max-height: none; white-space: pre;
  overflow: hidden; text-overflow: ellipsis; flex: none; text-align: center; box-sizing: border-box; padding: 0 1px; }
.ms-pmap .ms-collabels.ms-vertical div { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; max-height: 90px; }
.ms-pmap .ms-cursor { position: absolute; pointer-events: none; box-sizing: border-box;
  border: 2px dashed var(--jp-brand-color1, #1976d2); display: none; }
.ms-pmap .ms-pmap-sel { position: absolute; pointer-events: none; box-sizing: border-box;
  border: 2px solid #000; box-shadow: 0 0 0 2px #fff; display: none; }
.ms-pmap .ms-pmap-detail { min-width: min(400px, 100%); max-width: 560px; flex: 1 1 400px; padding: 6px 8px;
  box-sizing: border-box; overflow-x: auto; border-left: 3px solid var(--jp-border-color2, #ddd); }
.ms-pmap .ms-pmap-dhead { font-weight: 600; margin-bottom: 4px; white-space: pre-wrap; word-break: break-all; }
.ms-pmap .ms-pmap-facts { font-family: var(--jp-code-font-family, monospace); font-size: 11px; white-space: pre-wrap; }
.ms-pmap table.ms-pmap-top { border-collapse: collapse; margin-top: 6px; font-size: 11px; }
.ms-pmap table.ms-pmap-top th { text-align: left; font-weight: 600; padding: 2px 14px 2px 0;
  color: var(--jp-ui-font-color2, #555); border-bottom: 1px solid var(--jp-border-color2, #ddd); }
.ms-pmap table.ms-pmap-top td { padding: 2px 14px 3px 0; vertical-align: top; white-space: nowrap; }
.ms-pmap .ms-pmap-tok { font-family: var(--jp-code-font-family, monospace); white-space: pre;
  background: var(--jp-layout-color2, #eee); border-radius: 2px; padding: 0 3px; }
.ms-pmap .ms-pmap-num { color: var(--jp-ui-font-color2, #555); font-variant-numeric: tabular-nums; }
.ms-pmap td .ms-pmap-num { display: block; font-size: 10px; }
.ms-pmap .ms-pmap-rerun { margin-top: 6px; font-weight: 600; }
.ms-pmap .ms-pmap-caption { margin-top: 6px; color: var(--jp-ui-font-color2, #555); font-size: 11px; }
.ms-pmap .ms-pmap-error { color: var(--jp-error-color1, #d32f2f); white-space: pre-wrap; }
.ms-pmap .ms-pmap-bar { position: relative; }
.ms-pmap .ms-pmap-bar canvas { display: block; }
.ms-pmap .ms-pmap-zero { position: absolute; left: 13px; line-height: 14px; white-space: nowrap; }
.ms-pmap .ms-pmap-picker select { max-width: 280px; }
.ms-pmap > .ms-note { white-space: pre-line; }
${SPREAD_CSS}`;

/** A cell's number drawn inside it: short, fixed width. */
function short(v: number): string {
  if (!Number.isFinite(v)) return Number.isNaN(v) ? "NaN" : v > 0 ? "inf" : "-inf";
  const a = Math.abs(v);
  if (a >= 100) return v.toPrecision(2);
  if (a >= 10) return v.toFixed(0);
  const s = v.toFixed(2);
  return s === "-0.00" ? "0.00" : s;
}

function num(v: number | null | undefined): string {
  return v === null || v === undefined ? "n/a" : formatValue(v);
}

/** `mean [lo, hi]`, or the mean alone without an interval. */
function withInterval(v: number, lo: number | undefined, hi: number | undefined): string {
  return lo === undefined || hi === undefined ? formatValue(v) : `${formatValue(v)} [${formatValue(lo)}, ${formatValue(hi)}]`;
}

/** Over a dataset: what the map averages (all optional arrays decoded; null when absent). */
class Examples {
  n = 0;
  perExample: Float32Array | null = null;
  clean: Float32Array = new Float32Array(0);
  corrupt: Float32Array = new Float32Array(0);
  ciLow: Float32Array | null = null;
  ciHigh: Float32Array | null = null;
  normMean: Float32Array | null = null;
  normLow: Float32Array | null = null;
  normHigh: Float32Array | null = null;

  load(model: AnyModel<PatchingTraits>): void {
    const f = (k: keyof PatchingTraits) => {
      const v = decodeOptional(model.get(k) as Optional);
      return v === null ? null : Float32Array.from(v);
    };
    this.n = model.get("n_examples") ?? 0;
    [this.perExample, this.ciLow, this.ciHigh] = [f("per_example"), f("ci_low"), f("ci_high")];
    [this.normMean, this.normLow, this.normHigh] = [f("norm_mean"), f("norm_low"), f("norm_high")];
    this.clean = f("clean_per_example") ?? new Float32Array(0);
    this.corrupt = f("corrupt_per_example") ?? new Float32Array(0);
  }

  /** Example i's value at flat cell k: normalised by its own runs (NaN when they agree, as
   * PatchingResult.normalized_per_example), or its metric minus its corrupt metric. */
  value(i: number, k: number, cells: number, norm: boolean): number {
    const effect = this.perExample![i * cells + k] - this.corrupt[i];
    if (!norm) return effect;
    const span = this.clean[i] - this.corrupt[i];
    return !Number.isFinite(span) || Math.abs(span) <= 1e-9 * Math.max(1, Math.abs(this.clean[i])) ? NaN : effect / span;
  }
}

/** What the map shows, for its cells' text (tooltip, detail pane). */
export class PatchingCells {
  R = 0; // rows (layers)
  C = 0; // columns (positions or heads)
  effect: Float32Array = new Float32Array(0);
  readonly ex = new Examples();
  /** The cell of this view's newest select request, until Python's `selected` follows it. */
  asked: Cell | null = null;
  readonly requests: Requests<SelectMsg>;

  constructor(readonly model: AnyModel<PatchingTraits>) {
    this.requests = new Requests<SelectMsg>(model);
  }

  load(): void {
    const dec = decodeFloat(this.model.get("effect"));
    [this.R, this.C] = dec.shape;
    this.effect = dec.values;
    this.ex.load(this.model);
  }

  span(): number | null {
    const c = this.model.get("clean_metric");
    const k = this.model.get("corrupt_metric");
    if (c === null || k === null || c === undefined || k === undefined) return null;
    const s = c - k;
    return s !== 0 && Number.isFinite(s) ? s : null;
  }

  normalizedOn(): boolean {
    const can = this.ex.n ? this.ex.normMean !== null : this.span() !== null;
    return this.model.get("normalized") && this.model.get("can_normalize") && can;
  }

  /** The example drawn (-1: the mean, also when no per-example values were sent). */
  example(): number {
    const i = this.model.get("example") ?? -1;
    return this.ex.perExample && i >= 0 && i < this.ex.n ? i : -1;
  }

  /** What each cell shows in the current mode. */
  shown(): Float32Array {
    const i = this.example();
    const norm = this.normalizedOn();
    if (i >= 0) return Float32Array.from(this.effect, (_, k) => this.ex.value(i, k, this.R * this.C, norm));
    if (norm && this.ex.n && this.ex.normMean) return this.ex.normMean;
    const s = this.span();
    return this.effect.map((e) => (norm && s !== null ? e / s : e));
  }

  cellName(r: number, c: number): string {
    const m = this.model;
    const layer = m.get("row_labels")[r] ?? `L${r}`;
    if (m.get("column_kind") === "head") {
      return `${layer}  |  head ${m.get("col_labels")[c] ?? c} (positions: ${m.get("positions_text")})`;
    }
    if (m.get("column_kind") === "role") return `${layer}  |  role ${JSON.stringify(m.get("col_labels")[c] ?? "")}`;
    const clean = m.get("col_clean")[c] ?? "";
    const corrupt = m.get("col_corrupt")[c] ?? "";
    const pos = m.get("columns")[c] ?? c;
    const toks = clean === corrupt ? JSON.stringify(clean) : `${JSON.stringify(clean)} → ${JSON.stringify(corrupt)}`;
    return `${layer}  |  position ${pos} ${toks}`;
  }

  valueLines(r: number, c: number): string[] {
    if (this.ex.n) return this.example() >= 0 ? this.exampleLines(r, c) : this.meanLines(r, c);
    const e = this.effect[r * this.C + c];
    const k = this.model.get("corrupt_metric");
    const s = this.span();
    const parts = [];
    if (s !== null && this.model.get("can_normalize")) parts.push(`normalised: ${formatValue(e / s)}`);
    parts.push(`minus corrupt: ${formatValue(e)}`);
    return [`${this.model.get("metric_name")}: ${k === null ? "n/a" : formatValue(k + e)} (patched)`, parts.join("   ")];
  }

  /** A dataset's mean at (r, c) with its intervals: "0.42 [0.31, 0.55], 95% CI, n=100". */
  private meanLines(r: number, c: number): string[] {
    const k = r * this.C + c;
    const ex = this.ex;
    const e = this.effect[k];
    const corrupt = this.model.get("corrupt_metric");
    const ci = `${Math.round((this.model.get("ci_level") ?? 0.95) * 100)}% CI, n=${ex.n}`;
    const metric = corrupt === null ? "n/a" : withInterval(corrupt + e, ex.ciLow?.[k], ex.ciHigh?.[k]);
    const parts = [];
    if (ex.normMean && this.model.get("can_normalize")) {
      parts.push(`normalised: ${withInterval(ex.normMean[k], ex.normLow?.[k], ex.normHigh?.[k])}`);
    }
    parts.push(`minus corrupt: ${formatValue(e)}`);
    return [`${this.model.get("metric_name")}: ${metric}, ${ci} (patched, mean)`, parts.join("   ")];
  }

  /** Example i's own value at (r, c). */
  private exampleLines(r: number, c: number): string[] {
    const i = this.example();
    const k = r * this.C + c;
    const ex = this.ex;
    const cells = this.R * this.C;
    const parts = [];
    if (this.model.get("can_normalize")) parts.push(`normalised: ${formatValue(ex.value(i, k, cells, true))}`);
    parts.push(`minus corrupt: ${formatValue(ex.value(i, k, cells, false))}`);
    return [`${this.model.get("metric_name")}: ${formatValue(ex.perExample![i * cells + k])} (patched, example ${i})`,
      parts.join("   "), `example ${i}: clean ${formatValue(ex.clean[i])}, corrupt ${formatValue(ex.corrupt[i])}`];
  }

  /** The spread of cell (r, c) over the examples in the current mode (null: none sent). */
  spread(r: number, c: number): Spread | null {
    const ex = this.ex;
    if (!ex.n || !ex.perExample) return null;
    const k = r * this.C + c;
    const cells = this.R * this.C;
    const norm = this.normalizedOn();
    const texts = this.model.get("example_texts") ?? [];
    const current = this.example();
    if (norm && ex.normMean) {
      const values = Float32Array.from({ length: ex.n }, (_, i) => ex.value(i, k, cells, true));
      return { values, mean: ex.normMean[k], lo: ex.normLow?.[k] ?? null, hi: ex.normHigh?.[k] ?? null,
        label: "normalised effect per example", texts, current };
    }
    // raw: the patched metric of each example, its mean and the result's interval
    const values = Float32Array.from({ length: ex.n }, (_, i) => ex.perExample![i * cells + k]);
    const corrupt = this.model.get("corrupt_metric");
    return { values, mean: corrupt === null ? NaN : corrupt + this.effect[k], lo: ex.ciLow?.[k] ?? null,
      hi: ex.ciHigh?.[k] ?? null, label: `${this.model.get("metric_name")} per example, patched`, texts, current };
  }

  /** The selected cell (the one this view asked for while Python has not followed yet). */
  selectedCell(): Cell | null {
    const s = this.asked ?? this.model.get("selected");
    if (!s || s.length !== 2 || s[0] < 0 || s[1] < 0 || s[0] >= this.R || s[1] >= this.C) return null;
    return [s[0], s[1]];
  }
}

function topTable(d: RerunDetail): HTMLTableElement {
  const tbl = h("table", "ms-pmap-top");
  const thead = h("thead");
  const hr = h("tr");
  for (const name of ["#", "corrupt (before)", "patched (after)", "clean"]) hr.append(h("th", undefined, name));
  thead.append(hr);
  const tbody = h("tbody");
  const cols: Top[] = [d.before, d.after, d.clean];
  const k = Math.max(...cols.map((t) => t.tokens.length));
  for (let i = 0; i < k; i++) {
    const tr = h("tr");
    tr.append(h("td", "ms-pmap-num", String(i + 1)));
    cols.forEach((t, j) => {
      const td = h("td");
      if (i < t.tokens.length) {
        const tok = h("span", "ms-pmap-tok", JSON.stringify(t.tokens[i]));
        tok.title = `token id ${t.ids[i]}`;
        td.append(tok, h("span", "ms-pmap-num", `logit ${num(t.logits[i])} · p ${num(t.probs[i])}`));
      }
      td.dataset.col = ["before", "after", "clean"][j];
      tr.append(td);
    });
    tbody.append(tr);
  }
  tbl.append(thead, tbody);
  return tbl;
}

/** The detail pane with no cell selected. */
function emptyDetail(detail: HTMLElement, live: boolean): void {
  detail.dataset.state = "empty";
  detail.append(h("div", "ms-pmap-dhead", "no cell selected"));
  detail.append(h("div", "ms-note", live
    ? "Click a cell (or focus the map, move with the arrow keys and press Enter) to re-run that one patch through the model and compare the top next tokens before and after."
    : "Click a cell (or arrow keys + Enter on the focused map) to select it and see its value."));
}

/** Python's reply to the selection of (r, c) (its re-run, or why it failed), or what is awaited. */
function replyDetail(detail: HTMLElement, d: Detail, cell: Cell, cells: PatchingCells): void {
  const live = cells.model.get("live");
  const offline = !!cells.model.get("offline");
  const matches = answers(d, "cell", cell) && cells.requests.answers(d, "client_id");
  if (matches && d.kind === "rerun") {
    detail.dataset.state = "rerun";
    const what = d.approximation ? "exact re-run (the map is an attribution estimate)" : "re-run through the model";
    const norm = d.normalized !== null && d.normalized !== undefined ? `, normalised ${formatValue(d.normalized)}` : "";
    const over = d.n ? ` over ${d.n} examples (mean)` : "";
    detail.append(h("div", "ms-pmap-facts ms-pmap-rerun", `${what}${over}: ${num(d.value)}${norm}`));
    const whose = d.n ? ` of example ${d.example ?? 0} (${JSON.stringify(visibleToken(d.example_text ?? ""))})` : "";
    detail.append(h("div", "ms-pmap-caption", `top next tokens${whose} at the last position (logit · probability)`));
    detail.append(topTable(d));
    if (offline) detail.append(h("div", "ms-note", "(re-run saved with the notebook; live re-runs of other cells need a running kernel)"));
  } else if (matches && d.kind === "error") {
    detail.dataset.state = "error";
    detail.append(h("div", "ms-pmap-error", `re-run failed: ${d.message}`));
  } else if (live) {
    detail.dataset.state = "pending";
    detail.append(h("div", "ms-note", "re-running this patch through the model…"));
  } else {
    detail.dataset.state = "offline";
    detail.append(h("div", "ms-note", offline
      ? "Live re-run needs a running kernel: this is a static snapshot. In a notebook, result.show(model=model) re-runs a clicked cell and lists the top next tokens before and after."
      : "To re-run a clicked cell and compare the top next tokens, show the result with its model: result.show(model=model)."));
  }
}

/** The selected cell's value, its spread over a dataset's examples (`pick` draws the example
 * clicked there) and Python's reply (the detail pane beside the map). */
function renderDetail(detail: HTMLElement, cells: PatchingCells, pick: (i: number) => void): void {
  const model = cells.model;
  detail.replaceChildren();
  const s = cells.selectedCell();
  if (!s) return emptyDetail(detail, model.get("live"));
  detail.dataset.cell = `${s[0]},${s[1]}`;
  detail.append(h("div", "ms-pmap-dhead", cells.cellName(...s)));
  const means = cells.ex.n ? ` (means over ${cells.ex.n} examples)` : "";
  detail.append(h("div", "ms-pmap-facts", cells.valueLines(...s).join("\n") +
    `\nunpatched: corrupt ${num(model.get("corrupt_metric"))}, clean ${num(model.get("clean_metric"))}${means}`));
  const spread = cells.spread(...s);
  if (spread) {
    const strip = new SpreadStrip(spread, pick);
    detail.append(strip.el);
    strip.draw(getComputedStyle(detail).color || "#000");
  }
  replyDetail(detail, model.get("detail"), s, cells);
}

class PatchingView {
  readonly root = h("div", "ms-root ms-heatmap ms-pmap");
  private readonly title = h("div", "ms-title");
  private readonly select: HTMLSelectElement;
  private readonly optNorm: HTMLOptionElement;
  private readonly prompts = h("div", "ms-pmap-prompts");
  private readonly picker = h("label", "ms-pmap-picker");
  private pickerKey = "";
  private readonly rowLabels = h("div", "ms-rowlabels");
  private readonly scroll = h("div", "ms-scroll");
  private readonly canvas = h("canvas", "ms-canvas");
  private readonly cursor = h("div", "ms-cursor");
  private readonly selBox = h("div", "ms-pmap-sel");
  private readonly colLabels = h("div", "ms-collabels");
  private readonly colorbar = h("div", "ms-colorbar");
  readonly detail = h("div", "ms-pmap-detail");
  private readonly note = h("div", "ms-note");
  private readonly tip = new Tooltip(this.root);
  readonly cells: PatchingCells;
  private cellW = 1;
  private cellH = 1;
  private keyCell: Cell = [0, 0];

  constructor(private readonly model: AnyModel<PatchingTraits>, el: HTMLElement) {
    this.cells = new PatchingCells(model);
    const choice = choiceSelect("cell values", [
      ["normalized", "normalised (0 = corrupt, 1 = clean)"], ["raw", "raw (metric − corrupt)"],
    ]);
    this.select = choice.select;
    this.optNorm = choice.options.normalized;
    const head = h("div", "ms-pmap-head");
    const label = h("label", undefined, "cells: ");
    label.append(this.select);
    head.append(this.title, label, this.picker);
    this.canvas.tabIndex = 0;
    this.canvas.setAttribute("role", "grid");
    ownKeys(this.canvas);
    const inner = h("div", "ms-pmap-inner");
    inner.append(this.canvas, this.cursor, this.selBox, this.colLabels);
    this.scroll.append(inner);
    const mapBox = h("div", "ms-pmap-map");
    mapBox.append(this.rowLabels, this.scroll, this.colorbar);
    this.detail.setAttribute("aria-live", "polite");
    const body = h("div", "ms-pmap-body");
    body.append(mapBox, this.detail);
    this.root.append(head, this.prompts, body, this.note, this.tip.el);
    el.replaceChildren(this.root);
    this.listen();
  }

  draw(): void {
    const cells = this.cells;
    cells.load();
    const { R, C } = cells;
    this.title.textContent = this.model.get("title");
    this.prompts.textContent = this.promptsText();
    this.fillPicker();
    this.optNorm.disabled = !this.model.get("can_normalize") || cells.span() === null;
    this.select.value = cells.normalizedOn() ? "normalized" : "raw";
    const vals = cells.shown();
    const range = valueRange(vals, "diverging");
    this.sizeCells();
    this.drawCells(vals, range);
    const what = cells.normalizedOn() ? "normalised effect (0 = corrupt, 1 = clean)" : `${this.model.get("metric_name")} − corrupt`;
    this.canvas.setAttribute("aria-label", `patching map, ${R} layers by ${C} ${this.model.get("column_kind")}s, ${what}; arrow keys move, Enter selects a cell`);
    Object.assign(this.canvas.dataset, { cellW: String(this.cellW), cellH: String(this.cellH), lo: String(range.lo), hi: String(range.hi) });
    gridRowLabels(this.rowLabels, this.model.get("row_labels"), R, this.cellH);
    fillColumnLabels(this.colLabels, this.model.get("col_labels").slice(0, C), this.cellW, (c) => cells.cellName(0, c).split("  |  ")[1]);
    this.drawColorbar(range, R * this.cellH);
    const notes = [this.model.get("note"), this.model.get("examples_note")].filter((x) => x);
    if (cells.ex.perExample) notes.push("pick an example above to draw its own map; a selected cell shows its spread over the examples");
    notes.push("hover for values; click a cell, or focus the map and use the arrow keys and Enter, to select it");
    this.note.textContent = notes.join("\n");
    this.root.dataset.mode = cells.normalizedOn() ? "normalized" : "raw";
    this.root.dataset.example = String(cells.example());
    this.placeCell(this.cursor, this.keyCell, false);
    this.showSelection();
  }

  /** The prompts line: the clean and corrupt prompts, or over a dataset its size and the
   * example drawn (its clean text) or the first example's prompts. */
  private promptsText(): string {
    const m = this.model;
    const n = this.cells.ex.n;
    if (!n) return `clean:   ${JSON.stringify(m.get("clean_prompt"))}\ncorrupt: ${JSON.stringify(m.get("corrupt_prompt"))}`;
    const name = m.get("dataset_name") ? ` of ${JSON.stringify(m.get("dataset_name"))}` : "";
    const i = this.cells.example();
    const texts = m.get("example_texts") ?? [];
    if (i >= 0) return `example ${i} of ${n}${name}\nclean: ${JSON.stringify(texts[i] ?? "")}`;
    return `mean of ${n} examples${name}\nexample 0, clean: ${JSON.stringify(texts[0] ?? m.get("clean_prompt"))}`;
  }

  /** The example picker ("mean of n examples", then one entry per example: its index and
   * clean text, made visible), rebuilt only when the examples change; hidden without them. */
  private fillPicker(): void {
    const ex = this.cells.ex;
    const texts = this.model.get("example_texts") ?? [];
    const key = ex.perExample ? `${ex.n}\u0000${texts.join("\u0000")}` : "";
    if (key !== this.pickerKey) {
      this.pickerKey = key;
      this.picker.replaceChildren();
      if (key) {
        const options: [string, string][] = [["-1", `mean of ${ex.n} examples`]];
        for (let i = 0; i < ex.n; i++) options.push([String(i), `${i}: ${visibleToken(texts[i] ?? `example ${i}`)}`]);
        const { select } = choiceSelect("example", options);
        select.classList.add("ms-pmap-example");
        select.addEventListener("change", () => this.pick(Number(select.value)));
        this.picker.append("example: ", select);
      }
    }
    this.picker.style.display = key ? "" : "none";
    const select = this.picker.querySelector("select");
    if (select) select.value = String(this.cells.example());
  }

  /** Draw example i (-1: the mean): `example` set here; its listener redraws. */
  pick(i: number): void {
    this.model.set("example", i);
    this.model.save_changes();
  }

  /** Cells as wide as their labels want (within 48..96 px) while the map fits FIT_W; many
   * columns get narrower cells (vertical labels, no numbers) and scroll beyond it. */
  private sizeCells(): void {
    const { R, C } = this.cells;
    let chars = 1;
    for (const label of this.model.get("col_labels")) chars = Math.max(chars, Array.from(visibleToken(label)).length);
    const want = Math.max(48, Math.min(96, chars * 7 + 10));
    const cellW = Math.max(Math.min(want, Math.floor(FIT_W / Math.max(C, 1))), Math.min(18, Math.floor(MAX_CANVAS_W / Math.max(C, 1))));
    this.cellW = Math.max(2, cellW);
    this.cellH = Math.max(3, Math.min(26, Math.floor(MAX_GRID_H / Math.max(R, 1))));
  }

  private drawCells(vals: Float32Array, range: Range): void {
    const { R, C } = this.cells;
    const { cellW, cellH } = this;
    const ctx = sizeCanvas(this.canvas, C * cellW, R * cellH);
    const table = colorTable("diverging");
    ctx.font = codeFont(this.root, Math.min(11, cellH - 4));
    const showText = cellW >= TEXT_MIN_W && cellH >= TEXT_MIN_H;
    paintCells(ctx, {
      rows: R, cols: C, cellW, cellH,
      colour: (r, c) => cellColour(vals[r * C + c], table, range),
      text: showText ? (r, c) => short(vals[r * C + c]) : undefined,
    });
  }

  private drawColorbar(range: Range, cssH: number): void {
    const bar = colorBarCanvas(colorTable("diverging"), cssH);
    const barBox = h("div", "ms-pmap-bar");
    const zeroTick = h("span", "ms-pmap-zero", "– 0");
    zeroTick.style.top = `${bar.height / 2 - 7}px`;
    barBox.append(bar, zeroTick);
    this.colorbar.replaceChildren(h("div", undefined, formatValue(range.hi)), barBox, h("div", undefined, formatValue(range.lo)),
      h("div", undefined, this.cells.normalizedOn() ? "normalised" : "metric − corrupt"), h("div", undefined, "hatched grey = NaN/inf"));
  }

  private placeCell(box: HTMLElement, [r, c]: Cell, show: boolean): void {
    placeBox(box, c * this.cellW, r * this.cellH, this.cellW, this.cellH, show);
  }

  showSelection(): void {
    const s = this.cells.selectedCell();
    if (s) this.placeCell(this.selBox, s, true);
    else this.selBox.style.display = "none";
    renderDetail(this.detail, this.cells, (i) => this.pick(i));
  }

  private showTip(cell: Cell, clientX: number, clientY: number): void {
    this.tip.show([this.cells.cellName(...cell), ...this.cells.valueLines(...cell)].join("\n"), clientX, clientY);
    syncHovered(this.model, cell);
  }

  /** Select a cell: live, a request that Python answers by selecting it and re-running it
   * (`detail`); otherwise `selected` set here. */
  private choose([r, c]: Cell): void {
    const cur = this.cells.selectedCell();
    if (cur && cur[0] === r && cur[1] === c) return;
    if (this.model.get("live")) {
      this.cells.asked = [r, c];
      this.cells.requests.send({ kind: "select", cell: [r, c] });
      this.showSelection();
      return;
    }
    this.model.set("selected", [r, c]); // the change:selected listener redraws the selection
    this.model.save_changes();
  }

  /** `selected` changed: Python following this view's request, or moving the map elsewhere
   * (from Python or another view) while this view awaits nothing. */
  onSelected(): void {
    const asked = this.cells.asked;
    const s = this.model.get("selected");
    if (asked && s && s[0] === asked[0] && s[1] === asked[1]) this.cells.asked = null;
    else if (!asked) this.cells.requests.forget();
    this.showSelection();
  }

  /** `detail` changed: the reply to this view's request (while it asks, the request's id is
   * the one awaited) ends its wait for `selected`. */
  onDetail(): void {
    if (this.cells.asked && this.cells.requests.answers(this.model.get("detail"), "client_id")) this.cells.asked = null;
    renderDetail(this.detail, this.cells, (i) => this.pick(i));
  }

  private onKey(ev: KeyboardEvent): void {
    if (ev.key === "Escape") return this.tip.hide();
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      return this.choose(this.keyCell);
    }
    const { R, C } = this.cells;
    const d = keyStep(ev, R, C);
    if (!d) return;
    ev.preventDefault();
    this.keyCell = moveCell(this.keyCell, d, R, C);
    this.placeCell(this.cursor, this.keyCell, true);
    const x0 = this.keyCell[1] * this.cellW;
    scrollIntoView(this.scroll, x0, this.cellW);
    const cr = this.canvas.getBoundingClientRect();
    this.showTip(this.keyCell, cr.left + x0 + this.cellW / 2, cr.top + this.keyCell[0] * this.cellH + this.cellH / 2);
  }

  private listen(): void {
    const hit = (ev: MouseEvent) => cellAtEvent(this.canvas, ev, this.cells.R, this.cells.C);
    this.canvas.addEventListener("mousemove", (ev) => {
      const cell = hit(ev);
      if (cell) this.showTip(cell, ev.clientX, ev.clientY);
    });
    this.canvas.addEventListener("mouseleave", () => this.tip.hide());
    this.canvas.addEventListener("click", (ev) => {
      const cell = hit(ev);
      if (!cell) return;
      this.keyCell = cell;
      this.placeCell(this.cursor, cell, false);
      this.choose(cell);
    });
    this.canvas.addEventListener("blur", () => {
      this.tip.hide();
      this.cursor.style.display = "none";
    });
    this.canvas.addEventListener("keydown", (ev) => this.onKey(ev));
    this.select.addEventListener("change", () => {
      this.model.set("normalized", this.select.value === "normalized");
      this.model.save_changes(); // the change:normalized listener redraws
    });
  }
}

export default viewWidget<PatchingTraits, PatchingView>([STYLE_ID, CSS], (model, el) => new PatchingView(model, el), DATA,
  (model, view) => [
    onChange(model, ["selected"], () => view.onSelected()),
    replyFor(model, "detail", () => view.onDetail()),
    onChange(model, ["live"], () => view.showSelection()),
  ]);
