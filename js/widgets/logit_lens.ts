// LogitLens widget: layers x positions grid on canvas, each cell's top-1 token drawn as canvas
// text, coloured by top-1 probability / target probability / target rank (log scale).
// Python side: src/mechscope/widgets/logit_lens.py.
import { decode, decodeFloat, decodeOptional, type EncodedArray, type NumericArray } from "../lib/codec";
import { colorBarCanvas, colorTable } from "../lib/colors";
import { choiceSelect, fillColumnLabels, h, ownKeys } from "../lib/dom";
import {
  cellAtEvent, cellColour, codeFont, gridRowLabels, keyStep, moveCell, paintCells, placeBox, scrollIntoView,
  sizeCanvas, syncHovered, Tooltip, type Cell,
} from "../lib/grid";
import { viewWidget, type AnyModel } from "../lib/model";
import { visibleToken } from "../lib/tokens";

type Mode = "top1" | "target_prob" | "target_rank";

type LensTraits = {
  top_ids: EncodedArray;
  top_probs: EncodedArray;
  vocab_ids: EncodedArray;
  target_prob: EncodedArray | Record<string, never>;
  target_rank: EncodedArray | Record<string, never>;
  vocab: string[];
  tokens: string[];
  layer_labels: string[];
  target: string | null;
  title: string;
  color_mode: Mode;
  hovered: number[];
};

const STYLE_ID = "mechscope-logit-lens-style-v1";
const MAX_CANVAS_W = 16000; // stay well under browsers' canvas size limits
const MAX_GRID_H = 640;
const TEXT_MIN_W = 30; // draw cell text only when cells are at least this wide ...
const TEXT_MIN_H = 13; // ... and this tall
const DATA = ["top_ids", "top_probs", "vocab_ids", "vocab", "tokens", "layer_labels", "target", "target_prob",
  "target_rank", "color_mode", "title"] as const;
const CSS = `
.ms-lens .ms-lens-head { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; margin-bottom: 4px; }
.ms-lens select { font: inherit; color: var(--jp-ui-font-color1, #1f1f1f);
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bbb); border-radius: 2px; }
.ms-lens .ms-lens-body { display: flex; align-items: flex-start; gap: 4px; }
.ms-lens .ms-rowlabels div { text-align: right; padding-right: 4px; white-space: pre; overflow: hidden; }
.ms-lens .ms-scroll { overflow-x: auto; overflow-y: hidden; max-width: min(calc(100vw - 160px), 1000px); }
.ms-lens .ms-lens-inner { position: relative; }
.ms-lens .ms-collabels div { writing-mode: horizontal-tb; transform: none; max-height: none; white-space: pre;
  overflow: hidden; text-overflow: ellipsis; flex: none; text-align: center; box-sizing: border-box; padding: 0 1px; }
.ms-lens .ms-collabels.ms-vertical div { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; max-height: 90px; }
.ms-lens .ms-cursor { position: absolute; pointer-events: none; box-sizing: border-box;
  border: 2px solid var(--jp-brand-color1, #1976d2); display: none; }
.ms-lens .ms-canvas { image-rendering: auto; }
`;

/** ``text`` cut to fit ``maxW`` pixels with an ellipsis (not squeezed), cached per font/width. */
function fitText(ctx: CanvasRenderingContext2D, text: string, maxW: number, cache: Map<string, string>): string {
  const hit = cache.get(text);
  if (hit !== undefined) return hit;
  let out = text;
  if (ctx.measureText(text).width > maxW) {
    const chars = Array.from(text);
    let n = chars.length;
    while (n > 1 && ctx.measureText(chars.slice(0, n - 1).join("") + "…").width > maxW) n--;
    out = chars.slice(0, n - 1).join("") + "…";
  }
  cache.set(text, out);
  return out;
}

function fmtProb(p: number): string {
  if (Number.isNaN(p)) return "NaN";
  if (!Number.isFinite(p)) return p > 0 ? "+inf" : "-inf";
  if (p !== 0 && p < 1e-3) return p.toExponential(2);
  return p.toFixed(3);
}

/** Colour value in [0, 1] per cell (NaN for invalid), and the colour bar's end labels. */
interface Scaled {
  t: Float32Array;
  hi: string;
  lo: string;
  what: string;
}

class LensView {
  readonly root = h("div", "ms-root ms-lens");
  private readonly title = h("div", "ms-title");
  private readonly select: HTMLSelectElement;
  private readonly options: Record<string, HTMLOptionElement>;
  private readonly targetInfo = h("span", "ms-note");
  private readonly rowLabels = h("div", "ms-rowlabels");
  private readonly scroll = h("div", "ms-scroll");
  private readonly canvas = h("canvas", "ms-canvas");
  private readonly cursor = h("div", "ms-cursor");
  private readonly colLabels = h("div", "ms-collabels");
  private readonly colorbar = h("div", "ms-colorbar");
  private readonly tip = new Tooltip(this.root);
  private L = 0; // layers
  private P = 0; // positions
  private K = 0;
  private ids: NumericArray = new Int32Array(0);
  private probs: Float32Array = new Float32Array(0);
  private tprob: Float32Array | null = null;
  private trank: NumericArray | null = null;
  private names = new Map<number, string>();
  private cellW = 1;
  private cellH = 1;
  private keyCell: Cell = [0, 0]; // [layer index, position]

  constructor(private readonly model: AnyModel<LensTraits>, el: HTMLElement) {
    ({ select: this.select, options: this.options } = choiceSelect("colour cells by", [
      ["top1", "top-1 probability"], ["target_prob", "target probability"], ["target_rank", "target rank (log)"],
    ]));
    const head = h("div", "ms-lens-head");
    const label = h("label", undefined, "colour by ");
    label.append(this.select);
    head.append(this.title, label, this.targetInfo);
    this.canvas.tabIndex = 0;
    this.canvas.setAttribute("role", "img");
    ownKeys(this.canvas);
    const inner = h("div", "ms-lens-inner");
    inner.append(this.canvas, this.cursor, this.colLabels);
    this.scroll.append(inner);
    const body = h("div", "ms-lens-body");
    body.append(this.rowLabels, this.scroll, this.colorbar);
    const note = h("div", "ms-note", "hover or focus the grid and use the arrow keys for each cell's top-k tokens");
    this.root.append(head, body, note, this.tip.el);
    el.replaceChildren(this.root);
    this.listen();
  }

  private loadData(): void {
    const di = decode(this.model.get("top_ids"));
    [this.L, this.P, this.K] = di.shape;
    this.ids = di.values;
    this.probs = decodeFloat(this.model.get("top_probs")).values;
    const vocabIds = decode(this.model.get("vocab_ids")).values;
    const vocab = this.model.get("vocab");
    this.names = new Map();
    for (let i = 0; i < vocabIds.length; i++) this.names.set(vocabIds[i], vocab[i] ?? "");
    const tp = decodeOptional(this.model.get("target_prob"));
    this.tprob = tp ? Float32Array.from(tp) : null;
    this.trank = decodeOptional(this.model.get("target_rank"));
  }

  private mode(): Mode {
    const m = this.model.get("color_mode");
    return (m === "target_prob" || m === "target_rank") && this.tprob && this.trank ? m : "top1";
  }

  private targetText(): string {
    return JSON.stringify(this.model.get("target") ?? "");
  }

  private scaled(): Scaled {
    const n = this.L * this.P;
    const t = new Float32Array(n);
    const trank = this.trank;
    if (this.mode() === "target_rank" && trank) {
      let maxRank = 1;
      for (let i = 0; i < n; i++) if (Number.isFinite(trank[i]) && trank[i] > maxRank) maxRank = trank[i];
      const denom = Math.log10(maxRank + 1);
      for (let i = 0; i < n; i++) {
        const r = trank[i];
        t[i] = Number.isFinite(r) && r >= 0 ? 1 - Math.log10(r + 1) / denom : NaN;
      }
      return { t, hi: "rank 0", lo: `rank ${maxRank}`, what: `rank of ${this.targetText()} (log scale)` };
    }
    const src = this.mode() === "target_prob" ? this.tprob : null;
    for (let i = 0; i < n; i++) {
      const v = src ? src[i] : this.probs[i * this.K];
      t[i] = Number.isFinite(v) ? Math.max(0, Math.min(1, v)) : NaN;
    }
    return { t, hi: "1", lo: "0", what: src ? `p(${this.targetText()})` : "top-1 probability" };
  }

  draw(): void {
    this.loadData();
    this.drawHead();
    const { L, P } = this;
    this.cellW = Math.max(2, Math.min(64, Math.floor(MAX_CANVAS_W / Math.max(P, 1))));
    this.cellH = Math.max(3, Math.min(22, Math.floor(MAX_GRID_H / Math.max(L, 1))));
    const cssH = L * this.cellH;
    const ctx = sizeCanvas(this.canvas, P * this.cellW, cssH);
    const scaled = this.scaled();
    this.drawCells(ctx, scaled.t);
    this.canvas.setAttribute("aria-label", `logit lens, ${L} layers by ${P} positions, coloured by ${scaled.what}`);
    this.canvas.dataset.cellW = String(this.cellW);
    this.canvas.dataset.cellH = String(this.cellH);
    gridRowLabels(this.rowLabels, this.model.get("layer_labels"), L, this.cellH, true);
    const tokens = this.model.get("tokens");
    fillColumnLabels(this.colLabels, tokens.slice(0, P), this.cellW, (p) => JSON.stringify(tokens[p] ?? ""));
    const table = colorTable("viridis");
    this.colorbar.replaceChildren(h("div", undefined, scaled.hi), colorBarCanvas(table, cssH),
      h("div", undefined, scaled.lo), h("div", undefined, scaled.what), h("div", undefined, "grey / = NaN"));
    this.placeCursor(false);
    this.root.dataset.mode = this.mode();
  }

  private drawHead(): void {
    this.title.textContent = this.model.get("title");
    const hasTarget = !!(this.tprob && this.trank);
    this.options.target_prob.disabled = !hasTarget;
    this.options.target_rank.disabled = !hasTarget;
    this.targetInfo.textContent = hasTarget ? `target ${this.targetText()}` : "no target token";
    this.select.value = this.mode();
  }

  private drawCells(ctx: CanvasRenderingContext2D, t: Float32Array): void {
    const { L, P, K, cellW, cellH } = this;
    const table = colorTable("viridis");
    const unit = { lo: 0, hi: 1 };
    const showText = cellW >= TEXT_MIN_W && cellH >= TEXT_MIN_H;
    ctx.font = codeFont(this.root, Math.min(12, cellH - 3));
    const fitCache = new Map<string, string>();
    paintCells(ctx, {
      rows: L, cols: P, cellW, cellH,
      top: (l) => (L - 1 - l) * cellH, // last layer on top
      colour: (l, p) => cellColour(t[l * P + p], table, unit),
      text: showText
        ? (l, p) => fitText(ctx, visibleToken(this.names.get(this.ids[(l * P + p) * K]) ?? "?"), cellW - 4, fitCache)
        : undefined,
    });
  }

  private tipText(l: number, p: number): string {
    const { P, K } = this;
    const tokens = this.model.get("tokens");
    const lines = [`${this.model.get("layer_labels")[l] ?? l}  |  position ${p} ${JSON.stringify(tokens[p] ?? "")}`];
    for (let k = 0; k < K; k++) {
      const i = (l * P + p) * K + k;
      lines.push(`${String(k + 1).padStart(2)}. ${JSON.stringify(this.names.get(this.ids[i]) ?? "?")}  ${fmtProb(this.probs[i])}`);
    }
    if (this.tprob && this.trank) {
      const r = this.trank[l * P + p];
      lines.push(`target ${this.targetText()}: p ${fmtProb(this.tprob[l * P + p])}, rank ${Number.isFinite(r) ? r : "?"}`);
    }
    return lines.join("\n");
  }

  private showTip(cell: Cell, clientX: number, clientY: number): void {
    this.tip.show(this.tipText(cell[0], cell[1]), clientX, clientY);
    syncHovered(this.model, cell);
  }

  private placeCursor(show: boolean): void {
    const [l, p] = this.keyCell;
    placeBox(this.cursor, p * this.cellW, (this.L - 1 - l) * this.cellH, this.cellW, this.cellH, show);
  }

  private onKey(ev: KeyboardEvent): void {
    if (ev.key === "Escape") return this.tip.hide();
    const d = keyStep(ev, this.L, this.P, false, true) ?? (ev.key === "Home" ? [0, -this.P] : ev.key === "End" ? [0, this.P] : null);
    if (!d) return;
    ev.preventDefault();
    this.keyCell = moveCell(this.keyCell, d as Cell, this.L, this.P);
    this.placeCursor(true);
    const x0 = this.keyCell[1] * this.cellW;
    scrollIntoView(this.scroll, x0, this.cellW); // keep the cursor cell in view when the grid scrolls
    const cr = this.canvas.getBoundingClientRect();
    this.showTip(this.keyCell, cr.left + x0 + this.cellW / 2, cr.top + (this.L - 1 - this.keyCell[0]) * this.cellH + this.cellH / 2);
  }

  private listen(): void {
    this.canvas.addEventListener("mousemove", (ev) => {
      const hit = cellAtEvent(this.canvas, ev, this.L, this.P);
      if (hit) this.showTip([this.L - 1 - hit[0], hit[1]], ev.clientX, ev.clientY);
    });
    this.canvas.addEventListener("mouseleave", () => this.tip.hide());
    this.canvas.addEventListener("blur", () => {
      this.tip.hide();
      this.cursor.style.display = "none";
    });
    this.canvas.addEventListener("keydown", (ev) => this.onKey(ev));
    this.select.addEventListener("change", () => {
      this.model.set("color_mode", this.select.value as Mode);
      this.model.save_changes(); // the change:color_mode listener redraws
    });
  }
}

export default viewWidget<LensTraits, LensView>([STYLE_ID, CSS], (model, el) => new LensView(model, el), DATA);
