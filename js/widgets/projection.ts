// ProjectionScatter widget: texts as points on two axes (a concept direction, principal
// components), one canvas for thousands of points coloured by class, a legend and the axes' names
// and ranges. Hover a point for its class and text (a grid of buckets finds it), click to select
// it, drag a rectangle to select the points inside (shift adds), arrow keys go to the nearest point
// that way. The selected texts are drawn below token by token (js/lib/tokentext.ts), coloured by
// per-token values when given. Python side: src/mechscope/widgets/projection.py.
import { decode, decodeFloat, decodeOptional, type EncodedArray, type NumericArray } from "../lib/codec";
import { formatValue } from "../lib/colors";
import { h, ownKeys } from "../lib/dom";
import { sizeCanvas, Tooltip } from "../lib/grid";
import { onChange, viewWidget, type AnyModel } from "../lib/model";
import {
  categoryColor, drawFrame, eventPoint, nearestInDirection, paddedRange, pixels, PointGrid, SCATTER_ARROWS, textColor,
  type Plot,
} from "../lib/scatter";
import { autoScale, hoverTokens, scaleBar, scalePaint, tokenCss, tokenSpan, type TokenPaint } from "../lib/tokentext";
import { visibleToken } from "../lib/tokens";

type PSTraits = {
  x: EncodedArray;
  y: EncodedArray;
  labels: EncodedArray;
  token_ids: EncodedArray;
  offsets: EncodedArray;
  token_values: EncodedArray | Record<string, never>;
  vocab: string[];
  classes: string[];
  x_name: string;
  y_name: string;
  value_name: string;
  title: string;
  selected: number[];
};
type PSModel = AnyModel<PSTraits>;

const STYLE_ID = "mechscope-projection-style-v1";
const W = 560;
const H = 420;
const PAD = { left: 52, right: 12, top: 10, bottom: 34 };
const MAX_SHOWN = 200; // selected texts drawn at most
const MAX_RINGS = 50; // selected points ringed at most (more: only the fading marks them)
const TIP_CHARS = 400; // a hovered text is cut after this many characters
const DATA = ["x", "y", "labels", "token_ids", "offsets", "token_values", "vocab", "classes", "x_name", "y_name",
  "value_name", "title"] as const;
const CSS = `
.ms-ps { max-width: min(100%, 900px); }
.ms-ps .ms-ps-canvas { display: block; cursor: crosshair; outline: none; user-select: none; }
.ms-ps .ms-ps-canvas:focus-visible { outline: 2px solid var(--jp-brand-color1, #1976d2); }
.ms-ps .ms-ps-plot { position: relative; display: inline-block; }
.ms-ps .ms-ps-band { position: absolute; display: none; pointer-events: none;
  border: 1px dashed var(--jp-ui-font-color1, #333); background: rgba(25,118,210,0.08); }
.ms-ps .ms-legend { display: flex; flex-wrap: wrap; gap: 4px 12px; margin: 4px 0; font-size: 11px; }
.ms-ps .ms-dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 4px; vertical-align: -1px; }
.ms-ps .ms-ps-tip { white-space: pre-wrap; max-width: 420px; }
.ms-ps .ms-ps-info { font-size: 11px; color: var(--jp-ui-font-color2, #555); margin: 4px 0; }
.ms-ps .ms-ps-bar { display: flex; align-items: center; gap: 4px; font-size: 10px; color: var(--jp-ui-font-color2, #555); }
.ms-ps .ms-scalebar { display: block; border: 1px solid var(--jp-border-color2, #ddd); }
.ms-ps .ms-ps-texts { max-height: 360px; overflow-y: auto; }
.ms-ps .ms-ps-text { margin: 2px 0 6px 0; line-height: 1.7; }
.ms-ps .ms-ps-label { display: inline-block; font-size: 10px; padding: 0 5px; border-radius: 8px; margin-right: 6px;
  background: var(--jp-layout-color2, #eee); white-space: pre; }
${tokenCss(".ms-ps")}`;

/** A coloured dot and a text, as one element (class names stay text). */
function dotted(colour: string, text: string): HTMLElement {
  const dot = h("span", "ms-dot");
  dot.style.background = colour;
  const out = h("span");
  out.append(dot, h("span", "ms-ps-name", text));
  return out;
}

class ProjectionView {
  readonly root = h("div", "ms-root ms-ps");
  private readonly titleEl = h("div", "ms-title");
  private readonly legend = h("div", "ms-legend");
  private readonly canvas = h("canvas", "ms-ps-canvas");
  private readonly band = h("div", "ms-ps-band");
  private readonly info = h("div", "ms-ps-info");
  private readonly bar = h("div", "ms-ps-bar");
  private readonly texts = h("div", "ms-ps-texts");
  private readonly tip = new Tooltip(this.root, false);
  private xs: Float32Array = new Float32Array(0);
  private ys: Float32Array = new Float32Array(0);
  private labels: NumericArray = new Int32Array(0);
  private ids: NumericArray = new Int32Array(0);
  private offsets: NumericArray = new Int32Array(0);
  private values: Float32Array | null = null;
  private plot: Plot = { left: 0, top: 0, width: 1, height: 1, xlo: 0, xhi: 1, ylo: 0, yhi: 1 };
  private grid = new PointGrid(new Float32Array(0), new Float32Array(0), W, H);
  private cursor = -1; // the keyboard's point
  private drag: { x: number; y: number; moved: boolean; shift: boolean } | null = null;
  private readonly up = (ev: MouseEvent) => this.onUp(ev);

  constructor(private readonly model: PSModel, el: HTMLElement) {
    const plotBox = h("div", "ms-ps-plot");
    plotBox.append(this.canvas, this.band);
    this.canvas.tabIndex = 0;
    this.canvas.setAttribute("role", "img");
    this.tip.el.classList.add("ms-ps-tip");
    this.info.setAttribute("aria-live", "polite");
    this.root.append(this.titleEl, this.legend, plotBox, this.info, this.bar, this.texts, this.tip.el);
    ownKeys(this.canvas);
    this.listen();
    hoverTokens(this.texts, (span, ev) => this.tokenTip(span, ev), () => this.tip.hide());
    el.replaceChildren(this.root);
  }

  private listen(): void {
    const c = this.canvas;
    c.addEventListener("mousemove", (ev) => this.onMove(ev));
    c.addEventListener("mousedown", (ev) => {
      const [x, y] = eventPoint(c, ev);
      this.drag = { x, y, moved: false, shift: ev.shiftKey };
      ev.preventDefault(); // no text selection while dragging; keep the keys on the plot instead
      c.focus({ preventScroll: true });
    });
    window.addEventListener("mouseup", this.up);
    c.addEventListener("mouseleave", () => {
      if (!this.drag) this.hover(-1);
    });
    c.addEventListener("keydown", (ev) => this.onKey(ev));
    c.addEventListener("blur", () => this.tip.hide());
  }

  private text(i: number): string {
    const vocab = this.model.get("vocab");
    let out = "";
    for (let k = this.offsets[i]; k < this.offsets[i + 1]; k++) out += visibleToken(vocab[this.ids[k]] ?? "");
    return out;
  }

  private className(i: number): string {
    return this.model.get("classes")[this.labels[i]] ?? String(this.labels[i]);
  }

  /** The tooltip for point i at the client point (x, y); -1 hides it. */
  private hover(i: number, x = 0, y = 0): void {
    this.canvas.dataset.hover = String(i);
    if (i < 0) return this.tip.hide();
    const head = `#${i} · `;
    const text = this.text(i);
    const shown = text.length > TIP_CHARS ? `${text.slice(0, TIP_CHARS)}…` : text;
    const coords = ` · ${formatValue(this.xs[i])}, ${formatValue(this.ys[i])}\n`;
    this.tip.show(`${head}${this.className(i)}${coords}${shown}`, x, y);
    this.tip.el.replaceChildren(head, dotted(categoryColor(this.labels[i]), this.className(i)), coords,
      h("span", "ms-ps-tiptext", shown));
  }

  private onMove(ev: MouseEvent): void {
    const [x, y] = eventPoint(this.canvas, ev);
    if (this.drag) {
      this.drag.moved ||= Math.abs(x - this.drag.x) + Math.abs(y - this.drag.y) > 4;
      if (this.drag.moved) return this.showBand(x, y);
    }
    this.hover(this.grid.nearest(x, y), ev.clientX, ev.clientY);
  }

  private showBand(x: number, y: number): void {
    const d = this.drag!;
    Object.assign(this.band.style, { display: "block", left: `${Math.min(x, d.x)}px`, top: `${Math.min(y, d.y)}px`,
      width: `${Math.abs(x - d.x)}px`, height: `${Math.abs(y - d.y)}px` });
    this.tip.hide();
  }

  /** End of a press: a drag selects the points in its rectangle, a click the point under it
   * (none: clears); shift adds to (a click on a selected point: removes from) the selection. */
  private onUp(ev: MouseEvent): void {
    const d = this.drag;
    if (!d) return;
    this.drag = null;
    this.band.style.display = "none";
    const [x, y] = eventPoint(this.canvas, ev);
    const old = this.model.get("selected") ?? [];
    if (d.moved) {
      const inside = this.grid.inRect(d.x, d.y, x, y);
      return this.select(d.shift ? [...old, ...inside.filter((i) => !old.includes(i))] : inside);
    }
    const i = this.grid.nearest(d.x, d.y);
    if (!d.shift || i >= 0) this.cursor = i;
    if (!d.shift) this.select(i >= 0 ? [i] : []);
    else if (i >= 0) this.select(old.includes(i) ? old.filter((j) => j !== i) : [...old, i]);
  }

  private select(sel: number[]): void {
    this.model.set("selected", sel);
    this.model.save_changes();
  }

  /** Arrow keys: to the nearest point in that direction (the first key starts at the selected
   * point, or the first one); the point is selected and its tooltip shown. */
  private onKey(ev: KeyboardEvent): void {
    const dir = SCATTER_ARROWS[ev.key];
    if (!dir || !this.xs.length) return;
    ev.preventDefault();
    const sel = this.model.get("selected") ?? [];
    let i = this.cursor >= 0 ? this.cursor : sel.length ? sel[sel.length - 1] : -1;
    if (i < 0) i = 0;
    else {
      const j = nearestInDirection(this.grid.px, this.grid.py, i, dir[0], dir[1]);
      if (j >= 0) i = j;
    }
    this.cursor = i;
    this.select([i]);
    const r = this.canvas.getBoundingClientRect();
    this.hover(i, r.left + this.grid.px[i], r.top + this.grid.py[i]);
  }

  /** Every point in its class's colour (the classes in order, so later classes lie on top); with
   * a selection, the others faded and the selected drawn over them (ringed when at most MAX_RINGS),
   * all over the frame and the axes. */
  private drawPoints(): void {
    const ctx = sizeCanvas(this.canvas, W, H);
    const fg = textColor(this.root);
    drawFrame(ctx, this.plot, fg, this.model.get("x_name"), this.model.get("y_name"));
    const { px, py } = this.grid;
    const sel = (this.model.get("selected") ?? []).filter((i) => i >= 0 && i < px.length);
    const chosen = new Uint8Array(px.length);
    for (const i of sel) chosen[i] = 1;
    const n = this.model.get("classes").length;
    for (const pass of sel.length ? [0, 1] : [0]) {
      ctx.globalAlpha = !sel.length ? 0.8 : pass ? 0.95 : 0.15;
      for (let c = 0; c < n; c++) {
        ctx.fillStyle = categoryColor(c);
        for (let i = 0; i < px.length; i++) {
          if (this.labels[i] === c && (!sel.length || chosen[i] === pass)) ctx.fillRect(px[i] - 2, py[i] - 2, 4, 4);
        }
      }
    }
    ctx.globalAlpha = 1;
    ctx.strokeStyle = fg;
    ctx.lineWidth = 1.5;
    for (const i of sel.length <= MAX_RINGS ? sel : []) {
      ctx.beginPath();
      ctx.arc(px[i], py[i], 5, 0, Math.PI * 2);
      ctx.stroke();
    }
  }

  /** The selected texts (the first MAX_SHOWN), each with its class and index, token by token. */
  private drawTexts(): void {
    const sel = (this.model.get("selected") ?? []).filter((i) => i >= 0 && i < this.xs.length);
    const vocab = this.model.get("vocab");
    let paint: TokenPaint = { background: () => null };
    this.bar.replaceChildren();
    if (this.values && sel.length) {
      const scale = autoScale(this.values);
      paint = scalePaint(scale);
      this.bar.append(h("span", undefined, `${this.model.get("value_name")} `), h("span", "ms-ps-lo", formatValue(scale.range.lo)),
        scaleBar(scale.table, 160, 10), h("span", "ms-ps-hi", formatValue(scale.range.hi)));
    }
    const lines = sel.slice(0, MAX_SHOWN).map((i) => {
      const line = h("div", "ms-ps-text");
      line.dataset.point = String(i);
      const chip = h("span", "ms-ps-label");
      chip.append(dotted(categoryColor(this.labels[i]), this.className(i)), ` #${i}`);
      line.append(chip);
      for (let k = this.offsets[i]; k < this.offsets[i + 1]; k++) {
        const span = tokenSpan(vocab[this.ids[k]] ?? "", this.values ? this.values[k] : NaN, paint);
        span.dataset.k = String(k);
        if (!this.values) span.classList.remove("ms-tok-nan");
        line.append(span);
      }
      return line;
    });
    this.texts.replaceChildren(...lines);
    const more = sel.length > MAX_SHOWN ? ` (the first ${MAX_SHOWN} shown)` : "";
    this.info.textContent = sel.length ? `${sel.length} selected${more}` : "click a point or drag a rectangle to select";
    this.root.dataset.selected = sel.join(",");
  }

  private tokenTip(span: HTMLElement, ev: MouseEvent): void {
    if (!this.values) return;
    const k = Number(span.dataset.k);
    this.tip.show(`"${span.textContent}" · ${this.model.get("value_name")} = ${formatValue(this.values[k])}`, ev.clientX, ev.clientY);
  }

  /** Stop listening to the window. */
  dispose(): void {
    window.removeEventListener("mouseup", this.up);
  }

  /** Redraw what the selection changes: the rings and the texts below. */
  redrawSelection(): void {
    this.drawPoints();
    this.drawTexts();
  }

  draw(): void {
    const { model } = this;
    this.titleEl.textContent = model.get("title");
    this.xs = decodeFloat(model.get("x")).values;
    this.ys = decodeFloat(model.get("y")).values;
    this.labels = decode(model.get("labels")).values;
    this.ids = decode(model.get("token_ids")).values;
    this.offsets = decode(model.get("offsets")).values;
    const v = decodeOptional(model.get("token_values"));
    this.values = v ? Float32Array.from(v) : null;
    const [xlo, xhi] = paddedRange(this.xs);
    const [ylo, yhi] = paddedRange(this.ys);
    this.plot = { left: PAD.left, top: PAD.top, width: W - PAD.left - PAD.right, height: H - PAD.top - PAD.bottom,
      xlo, xhi, ylo, yhi };
    const { px, py } = pixels(this.plot, this.xs, this.ys);
    this.grid = new PointGrid(px, py, W, H);
    this.cursor = -1;
    this.canvas.dataset.plot = JSON.stringify(this.plot);
    this.canvas.setAttribute("aria-label", `scatter of ${this.xs.length} points: ${model.get("x_name")} against ` +
      `${model.get("y_name")}; arrow keys move between points`);
    this.legend.replaceChildren(...model.get("classes").map((c, k) => dotted(categoryColor(k), c)));
    this.redrawSelection();
  }
}

export default viewWidget<PSTraits, ProjectionView>([STYLE_ID, CSS], (model, el) => new ProjectionView(model, el), DATA,
  (model, view) => [onChange(model, ["selected"], () => view.redrawSelection()), () => view.dispose()]);
