// TrainingMonitor: a sparse dictionary's training curves (loss, L0, FVU, dead fraction against
// tokens seen), one line per seed, redrawn as the kernel updates the arrays; hover a chart for
// the nearest point. Python side: src/mechscope/widgets/sae_training.py.
import { decode, decodeFloat, type EncodedArray } from "../lib/codec";
import { formatValue } from "../lib/colors";
import { h } from "../lib/dom";
import { sizeCanvas, Tooltip } from "../lib/grid";
import { drawLines, nearestPoint, seriesRange, type Series } from "../lib/lines";
import { viewWidget, type AnyModel } from "../lib/model";
import { categoryColor, drawFrame, eventPoint, textColor, type Plot } from "../lib/scatter";

type MonitorTraits = {
  seed_index: EncodedArray;
  tokens: EncodedArray;
  loss: EncodedArray;
  l0: EncodedArray;
  fvu: EncodedArray;
  dead_fraction: EncodedArray;
  seeds: number[];
  title: string;
  hovered: string[];
};

type Curve = "loss" | "l0" | "fvu" | "dead_fraction";
const CURVES: readonly [Curve, string][] = [["loss", "loss"], ["l0", "L0"], ["fvu", "FVU"],
  ["dead_fraction", "dead fraction"]];
const STYLE_ID = "mechscope-sae-training-style-v1";
const DATA = ["seed_index", "tokens", "loss", "l0", "fvu", "dead_fraction", "seeds", "title"] as const;
const CSS = `
.ms-saetrain .ms-saetrain-legend { display: flex; gap: 10px; flex-wrap: wrap; margin-bottom: 4px; }
.ms-saetrain .ms-saetrain-swatch { display: inline-block; width: 12px; height: 3px; margin-right: 4px;
  vertical-align: middle; }
.ms-saetrain .ms-saetrain-panels { display: grid; grid-template-columns: repeat(2, max-content);
  justify-content: start; gap: 6px 14px; }
.ms-saetrain .ms-saetrain-name { font-size: 11px; color: var(--jp-ui-font-color2, #555); }
.ms-saetrain .ms-saetrain-empty { font-size: 11px; color: var(--jp-ui-font-color2, #666); }
`;
const W = 280;
const H = 150;
const PLOT: Omit<Plot, "xlo" | "xhi" | "ylo" | "yhi"> = { left: 48, top: 8, width: W - 58, height: H - 40 };

class MonitorView {
  readonly root = h("div", "ms-root ms-saetrain");
  private readonly title = h("div", "ms-title");
  private readonly legend = h("div", "ms-saetrain-legend");
  private readonly panels = h("div", "ms-saetrain-panels");
  private readonly canvases = new Map<Curve, HTMLCanvasElement>();
  private readonly plots = new Map<Curve, Plot>();
  private series = new Map<Curve, Series[]>();
  private indices: number[][] = [];
  private tokens: Float32Array = new Float32Array(0);
  private readonly tip: Tooltip;

  constructor(private readonly model: AnyModel<MonitorTraits>, el: HTMLElement) {
    this.tip = new Tooltip(this.root, false);
    for (const [curve, name] of CURVES) {
      const canvas = h("canvas", "ms-canvas");
      canvas.dataset.curve = curve;
      canvas.setAttribute("aria-label", name);
      canvas.addEventListener("mousemove", (ev) => this.hover(curve, ev));
      canvas.addEventListener("mouseleave", () => this.tip.hide());
      this.canvases.set(curve, canvas);
      const box = h("div");
      box.append(h("div", "ms-saetrain-name", name), canvas);
      this.panels.append(box);
    }
    this.root.append(this.title, this.legend, this.panels, this.tip.el);
    el.append(this.root);
  }

  draw(): void {
    this.title.textContent = this.model.get("title");
    const seeds = this.model.get("seeds") ?? [];
    const seedOf = decode(this.model.get("seed_index")).values;
    this.tokens = decodeFloat(this.model.get("tokens")).values;
    this.indices = seeds.map(() => []);
    for (let i = 0; i < seedOf.length; i++) this.indices[seedOf[i]]?.push(i);
    this.drawLegend(seeds);
    for (const [curve] of CURVES) this.drawCurve(curve);
  }

  private drawLegend(seeds: number[]): void {
    this.legend.replaceChildren();
    seeds.forEach((seed, k) => {
      const item = h("span");
      const swatch = h("span", "ms-saetrain-swatch");
      swatch.style.background = categoryColor(k);
      item.append(swatch, document.createTextNode(`seed ${seed}`));
      this.legend.append(item);
    });
    if (!this.tokens.length) this.legend.append(h("span", "ms-saetrain-empty", "waiting for the first step"));
  }

  private drawCurve(curve: Curve): void {
    const values = decodeFloat(this.model.get(curve)).values;
    const series: Series[] = this.indices.map((idx, k) => ({
      xs: Float32Array.from(idx, (i) => this.tokens[i]),
      ys: Float32Array.from(idx, (i) => values[i]),
      colour: categoryColor(k),
    }));
    const [xlo, xhi] = seriesRange(series.map((s) => s.xs), 0);
    const [ylo, yhi] = seriesRange(series.map((s) => s.ys));
    const plot: Plot = { ...PLOT, xlo, xhi, ylo, yhi };
    const canvas = this.canvases.get(curve)!;
    const ctx = sizeCanvas(canvas, W, H);
    ctx.clearRect(0, 0, W, H);
    drawFrame(ctx, plot, textColor(this.root), "tokens", "");
    drawLines(ctx, plot, series);
    this.series.set(curve, series);
    this.plots.set(curve, plot);
  }

  private hover(curve: Curve, ev: MouseEvent): void {
    const plot = this.plots.get(curve);
    const series = this.series.get(curve);
    if (!plot || !series) return;
    const [px, py] = eventPoint(this.canvases.get(curve)!, ev);
    const hit = nearestPoint(plot, series, px, py);
    if (!hit) {
      this.tip.hide();
      return;
    }
    const [k, i] = hit;
    const seed = (this.model.get("seeds") ?? [])[k];
    const name = CURVES.find(([c]) => c === curve)![1];
    this.tip.show(`seed ${seed}\ntokens ${Math.round(series[k].xs[i])}\n${name} ${formatValue(series[k].ys[i])}`,
      ev.clientX, ev.clientY);
    this.model.set("hovered", [curve, String(seed), String(this.indices[k][i])]);
    this.model.save_changes();
  }
}

export default viewWidget<MonitorTraits, MonitorView>([STYLE_ID, CSS], (model, el) => new MonitorView(model, el), DATA);
