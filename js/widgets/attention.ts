// AttentionPatterns widget: a layer x head grid of pattern thumbnails, the selected head's
// query x key map in full (tokens on both axes, pooled to the screen, the exact cell on hover),
// the text coloured by the hovered query's attention, and per-head scores with the top heads.
// Python side: src/mechscope/widgets/attention.py.
import { decodeFloat, type EncodedArray } from "../lib/codec";
import { colorBarCanvas, colorTable, formatValue } from "../lib/colors";
import { choiceSelect, fillColumnLabels, h, ownKeys } from "../lib/dom";
import {
  cellAtEvent, gridRowLabels, keyStep, moveCell, placeBox, sizeCanvas, syncHovered, Tooltip, type Cell,
} from "../lib/grid";
import { viewWidget, type AnyModel } from "../lib/model";
import { visibleToken } from "../lib/tokens";

type AttnTraits = {
  patterns: EncodedArray;
  scores: EncodedArray;
  ci_low: EncodedArray;
  ci_high: EncodedArray;
  tokens: string[];
  layers: number[];
  heads: number[];
  score_names: string[];
  score: string;
  selected: number[];
  hovered: number[];
  pooled: number;
  n_examples: number;
  induction_source: string;
  title: string;
};

const STYLE_ID = "mechscope-attention-style-v1";
const MAP_PX = 440; // the full map's side at most (CSS px); longer prompts are pooled to it
const THUMB_GRID_PX = 420; // the thumbnail grid's width at most
const TOP_N = 8;
const DATA = ["patterns", "scores", "ci_low", "ci_high", "tokens", "layers", "heads", "score_names", "title",
  "pooled", "induction_source", "n_examples"] as const;
const CSS = `
.ms-attn .ms-attn-head { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; margin-bottom: 4px; }
.ms-attn select { font: inherit; color: var(--jp-ui-font-color1, #1f1f1f);
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bbb); border-radius: 2px; }
.ms-attn .ms-attn-body { display: flex; align-items: flex-start; gap: 14px; flex-wrap: wrap; }
.ms-attn .ms-attn-thumbs { display: grid; gap: 2px; align-items: center; justify-items: center; }
.ms-attn .ms-attn-thumbs .ms-attn-lab { font-size: 10px; color: var(--jp-ui-font-color2, #555); white-space: nowrap; }
.ms-attn .ms-attn-thumb { display: block; cursor: pointer; border: 2px solid transparent; box-sizing: content-box;
  image-rendering: pixelated; }
.ms-attn .ms-attn-thumb.ms-on { border-color: var(--jp-brand-color1, #1976d2); }
.ms-attn .ms-attn-cap { font-size: 9px; line-height: 10px; color: var(--jp-ui-font-color2, #555); }
.ms-attn .ms-attn-side { display: flex; flex-direction: column; gap: 2px; min-width: 150px; }
.ms-attn .ms-attn-side button { font: inherit; text-align: left; cursor: pointer; padding: 1px 4px;
  background: var(--jp-layout-color1, #fff); color: var(--jp-ui-font-color1, #1f1f1f);
  border: 1px solid var(--jp-border-color2, #ddd); border-radius: 2px; }
.ms-attn .ms-attn-map { display: grid; grid-template-columns: auto auto auto; gap: 4px; align-items: start; }
.ms-attn .ms-attn-inner { position: relative; }
.ms-attn .ms-cursor { position: absolute; pointer-events: none; box-sizing: border-box;
  border: 1px solid var(--jp-brand-color1, #1976d2); display: none; }
.ms-attn .ms-rowlabels { max-width: 120px; overflow: hidden; }
.ms-attn .ms-rowlabels div { text-align: right; padding-right: 4px; white-space: pre; overflow: hidden; }
.ms-attn .ms-attn-readout { font-family: var(--jp-code-font-family, monospace); font-size: 11px; min-height: 14px;
  white-space: pre; }
.ms-attn .ms-attn-text { font-family: var(--jp-code-font-family, monospace); font-size: 12px; line-height: 20px;
  max-width: 1000px; margin-top: 6px; }
.ms-attn .ms-attn-text span { white-space: pre-wrap; overflow-wrap: anywhere; padding: 1px 0; border-radius: 2px; cursor: default; }
.ms-attn .ms-attn-text span.ms-q { outline: 2px solid var(--jp-brand-color1, #1976d2); }
`;

/** ImageData-sized RGBA of a (n x n) map `values[off ..]`, max-pooled to at most `px` per side. */
function pooledImage(values: Float32Array, off: number, n: number, px: number, table: Uint8ClampedArray): ImageData {
  const m = Math.min(n, Math.max(1, Math.floor(px)));
  const img = new ImageData(m, m);
  for (let y = 0; y < m; y++) {
    const q0 = Math.floor((y * n) / m), q1 = Math.max(q0 + 1, Math.floor(((y + 1) * n) / m));
    for (let x = 0; x < m; x++) {
      const k0 = Math.floor((x * n) / m), k1 = Math.max(k0 + 1, Math.floor(((x + 1) * n) / m));
      let v = -Infinity;
      for (let q = q0; q < q1; q++) for (let k = k0; k < k1; k++) v = Math.max(v, values[off + q * n + k]);
      const i = (y * m + x) * 4;
      if (!Number.isFinite(v)) {
        img.data.set([128, 128, 128, 255], i);
        continue;
      }
      const c = Math.max(0, Math.min(255, Math.round(v * 255))) * 3;
      img.data.set([table[c], table[c + 1], table[c + 2], 255], i);
    }
  }
  return img;
}

/** Draw `img` over the whole of `canvas` (cssW x cssH), cells kept sharp. */
function blit(canvas: HTMLCanvasElement, img: ImageData, cssW: number, cssH: number): void {
  const off = document.createElement("canvas");
  off.width = img.width;
  off.height = img.height;
  off.getContext("2d")!.putImageData(img, 0, 0);
  const ctx = sizeCanvas(canvas, cssW, cssH);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 0, cssW, cssH);
}

class AttentionView {
  private readonly table = colorTable("viridis");
  private readonly tooltip: Tooltip;
  private readonly titleEl = h("div", "ms-title");
  private readonly note = h("span", "ms-note");
  private readonly scoreSel: HTMLSelectElement;
  private readonly thumbs = h("div", "ms-attn-thumbs");
  private readonly side = h("div", "ms-attn-side");
  private readonly mapTitle = h("div", "ms-title");
  private readonly rowLabels = h("div", "ms-rowlabels");
  private readonly colLabels = h("div", "ms-collabels");
  private readonly inner = h("div", "ms-attn-inner");
  private readonly mapBox = h("div", "ms-attn-map");
  private readonly map = h("canvas", "ms-canvas ms-attn-big");
  private readonly cursor = h("div", "ms-cursor");
  private readonly colorbar = h("div", "ms-colorbar");
  private readonly readout = h("div", "ms-attn-readout");
  private readonly text = h("div", "ms-attn-text");
  private values: Float32Array = new Float32Array(0);
  private n = 0;
  private cellPx = 1;
  private mapPx = 1;
  private cell: Cell | null = null;
  private spans: HTMLSpanElement[] = [];

  constructor(private readonly model: AnyModel<AttnTraits>, el: HTMLElement) {
    const root = h("div", "ms-root ms-attn");
    this.tooltip = new Tooltip(root, false);
    this.scoreSel = choiceSelect("score", []).select;
    this.scoreSel.addEventListener("change", () => {
      model.set("score", this.scoreSel.value);
      model.save_changes();
    });
    const head = h("div", "ms-attn-head");
    head.append(h("span", undefined, "score"), this.scoreSel, this.note);
    this.inner.append(this.map, this.cursor);
    this.mapBox.append(this.rowLabels, this.inner, this.colorbar, h("div"), this.colLabels);
    const right = h("div");
    right.append(this.mapTitle, this.mapBox, this.readout);
    const body = h("div", "ms-attn-body");
    body.append(this.thumbs, this.side, right);
    root.append(this.titleEl, head, body, this.text, this.tooltip.el);
    el.replaceChildren(root);
    this.map.tabIndex = 0;
    this.map.setAttribute("aria-label", "attention map: arrow keys move the cursor");
    ownKeys(this.map);
    this.map.addEventListener("mousemove", (ev) => {
      const c = cellAtEvent(this.map, ev, this.n, this.n);
      if (c) this.hover(c, ev.clientX, ev.clientY);
    });
    this.map.addEventListener("mouseleave", () => this.tooltip.hide());
    this.map.addEventListener("keydown", (ev) => this.key(ev));
  }

  private get shape(): number[] {
    return this.model.get("patterns").shape;
  }

  private get sel(): Cell {
    const s = this.model.get("selected") ?? [0, 0];
    return [s[0] ?? 0, s[1] ?? 0];
  }

  draw(): void {
    const [nl, nh, n] = this.shape;
    this.values = decodeFloat(this.model.get("patterns")).values;
    this.n = n;
    this.titleEl.textContent = this.model.get("title");
    const names = this.model.get("score_names");
    this.scoreSel.replaceChildren(...names.map((s) => {
      const o = h("option", undefined, s.replace(/_/g, "-"));
      o.value = s;
      return o;
    }));
    this.scoreSel.value = this.model.get("score");
    const pooled = this.model.get("pooled");
    const nEx = this.model.get("n_examples");
    const notes = [`${nl} layers x ${nh} heads, ${n} ${pooled > 1 ? `blocks of ${pooled} tokens` : "tokens"}`,
      "colour: probability 0..1"];
    if (nEx > 1) notes.push(`scores: mean over ${nEx} examples [95% CI]; patterns: one example`);
    this.note.replaceChildren(h("span", undefined, notes.join(" · ")));
    const source = this.model.get("induction_source");
    if (source !== "prompt") this.note.append(h("span", undefined, " · induction on "), h("span", undefined, source));
    this.drawThumbs(nl, nh, n);
    this.drawScores();
    this.drawMap();
  }

  private drawThumbs(nl: number, nh: number, n: number): void {
    const px = Math.max(20, Math.min(56, Math.floor(THUMB_GRID_PX / nh) - 6));
    this.thumbs.style.gridTemplateColumns = `auto repeat(${nh}, ${px + 4}px)`;
    const layers = this.model.get("layers");
    const heads = this.model.get("heads");
    const cells: HTMLElement[] = [h("div")];
    for (let j = 0; j < nh; j++) cells.push(h("div", "ms-attn-lab", `H${heads[j]}`));
    for (let i = 0; i < nl; i++) {
      cells.push(h("div", "ms-attn-lab", `L${layers[i]}`));
      for (let j = 0; j < nh; j++) {
        const box = h("div");
        const c = h("canvas", "ms-attn-thumb");
        c.dataset.layer = String(i);
        c.dataset.head = String(j);
        blit(c, pooledImage(this.values, (i * nh + j) * n * n, n, px * 2, this.table), px, px);
        c.addEventListener("click", () => this.select([i, j]));
        box.append(c, h("div", "ms-attn-cap"));
        cells.push(box);
      }
    }
    this.thumbs.replaceChildren(...cells);
    this.markSelected();
  }

  private scoreOf(name: string, i: number, j: number): [number, number, number] {
    const k = this.model.get("score_names").indexOf(name);
    const [, nl, nh] = this.model.get("scores").shape;
    const at = (k * nl + i) * nh + j;
    return [decodeFloat(this.model.get("scores")).values[at], decodeFloat(this.model.get("ci_low")).values[at],
      decodeFloat(this.model.get("ci_high")).values[at]];
  }

  private drawScores(): void {
    const name = this.model.get("score");
    const [, nl, nh] = this.model.get("scores").shape;
    const layers = this.model.get("layers");
    const heads = this.model.get("heads");
    const all: [number, number, number][] = [];
    for (let i = 0; i < nl; i++) for (let j = 0; j < nh; j++) all.push([this.scoreOf(name, i, j)[0], i, j]);
    const caps = Array.from(this.thumbs.querySelectorAll<HTMLElement>(".ms-attn-cap"));
    caps.forEach((cap, k) => {
      const v = all[k]?.[0] ?? NaN;
      cap.textContent = Number.isFinite(v) ? v.toFixed(2) : "–";
    });
    const ranked = all.filter((a) => Number.isFinite(a[0])).sort((a, b) => b[0] - a[0]).slice(0, TOP_N);
    const items: HTMLElement[] = [h("div", "ms-title", `top ${name.replace(/_/g, "-")} heads`)];
    for (const [v, i, j] of ranked) {
      const [, lo, hi] = this.scoreOf(name, i, j);
      const ci = this.model.get("n_examples") > 1 ? ` [${lo.toFixed(2)}, ${hi.toFixed(2)}]` : "";
      const b = h("button", undefined, `L${layers[i]} H${heads[j]}  ${v.toFixed(3)}${ci}`);
      b.addEventListener("click", () => this.select([i, j]));
      items.push(b);
    }
    if (!ranked.length) items.push(h("div", "ms-note", "undefined on this prompt (no such query)"));
    this.side.replaceChildren(...items);
  }

  private select(c: Cell): void {
    this.model.set("selected", [c[0], c[1]]);  // the change listener redraws (selectionChanged)
    this.model.save_changes();
  }

  /** `selected` changed (a click here, or Python): mark its thumbnail, draw its map. */
  selectionChanged(): void {
    this.tooltip.hide();  // it named the previous head's value
    this.markSelected();
    this.drawMap();
  }

  /** `score` changed: the captions and the top-heads list. */
  scoreChanged(): void {
    this.scoreSel.value = this.model.get("score");
    this.drawScores();
  }

  private markSelected(): void {
    const [si, sj] = this.sel;
    for (const c of Array.from(this.thumbs.querySelectorAll<HTMLCanvasElement>("canvas"))) {
      c.classList.toggle("ms-on", Number(c.dataset.layer) === si && Number(c.dataset.head) === sj);
    }
  }

  private drawMap(): void {
    const [, nh, n] = this.shape;
    const [i, j] = this.sel;
    this.cellPx = Math.max(1, Math.min(22, Math.floor(MAP_PX / n)));
    this.mapPx = n * this.cellPx > MAP_PX ? MAP_PX : n * this.cellPx;
    this.cellPx = this.mapPx / n;
    blit(this.map, pooledImage(this.values, (i * nh + j) * n * n, n, this.mapPx * 2, this.table),
      this.mapPx, this.mapPx);
    this.mapBox.style.gridTemplateColumns = `minmax(0, 120px) ${this.mapPx}px auto`;
    this.colLabels.style.width = `${this.mapPx}px`;
    this.colLabels.style.overflow = "hidden";
    this.map.dataset.layer = String(i);
    this.map.dataset.head = String(j);
    const tokens = this.model.get("tokens");
    this.mapTitle.textContent = `layer ${this.model.get("layers")[i]} head ${this.model.get("heads")[j]}: query (rows) x key (columns)`;
    gridRowLabels(this.rowLabels, tokens, n, Math.max(this.cellPx, 3));
    if (this.cellPx < 3) this.rowLabels.replaceChildren();
    fillColumnLabels(this.colLabels, tokens, this.cellPx, (k) => `key ${k}: ${visibleToken(tokens[k] ?? "")}`);
    const bar = colorBarCanvas(this.table, this.mapPx);
    this.colorbar.replaceChildren(h("span", undefined, "1"), bar, h("span", undefined, "0"));
    this.drawText();
    if (this.cell) this.showCell(this.cell);
  }

  private drawText(): void {
    const tokens = this.model.get("tokens");
    this.spans = tokens.map((t, q) => {
      const s = h("span", undefined, visibleToken(t));
      s.addEventListener("mouseenter", () => this.colourText(q));
      return s;
    });
    this.text.replaceChildren(h("div", "ms-note", "hover a query (a row or a token) to colour the text by its attention"),
      ...this.spans);
  }

  /** Each key token's background by the attention query `q` pays it in the selected head. */
  private colourText(q: number): void {
    const [, nh, n] = this.shape;
    const [i, j] = this.sel;
    const base = ((i * nh + j) * n + q) * n;
    this.spans.forEach((s, k) => {
      const v = k <= q ? this.values[base + k] : NaN;
      s.classList.toggle("ms-q", k === q);
      if (!Number.isFinite(v)) {
        s.style.background = "";
        return;
      }
      const c = Math.max(0, Math.min(255, Math.round(v * 255))) * 3;
      s.style.background = `rgba(${this.table[c]},${this.table[c + 1]},${this.table[c + 2]},${(0.15 + 0.85 * v).toFixed(3)})`;
      s.style.color = v > 0.5 ? "#000" : "";
    });
  }

  private readoutText([q, k]: Cell): string {
    const [, nh, n] = this.shape;
    const [i, j] = this.sel;
    const tokens = this.model.get("tokens");
    const v = this.values[((i * nh + j) * n + q) * n + k];
    return `query ${q} ${visibleToken(tokens[q] ?? "")} → key ${k} ${visibleToken(tokens[k] ?? "")}: ${formatValue(v)}`;
  }

  private showCell(c: Cell): void {
    this.cell = c;
    placeBox(this.cursor, c[1] * this.cellPx, c[0] * this.cellPx, Math.max(this.cellPx, 2), Math.max(this.cellPx, 2), true);
    this.readout.textContent = this.readoutText(c);
    this.colourText(c[0]);
  }

  private hover(c: Cell, x: number, y: number): void {
    this.showCell(c);
    this.tooltip.show(this.readoutText(c), x, y);
    syncHovered(this.model, c);
  }

  private key(ev: KeyboardEvent): void {
    const d = keyStep(ev, this.n, this.n);
    if (!d) return;
    ev.preventDefault();
    const c = moveCell(this.cell ?? [0, 0], d, this.n, this.n);
    this.showCell(c);
    syncHovered(this.model, c);
  }
}

export default viewWidget<AttnTraits, AttentionView>(
  [STYLE_ID, CSS],
  (model, el) => new AttentionView(model, el),
  DATA,
  (model, view) => {
    const onSelected = () => view.selectionChanged();
    const onScore = () => view.scoreChanged();
    model.on("change:selected", onSelected);
    model.on("change:score", onScore);
    return [() => model.off("change:selected", onSelected), () => model.off("change:score", onScore)];
  },
);
