// Selectivity widget: histogram of a layer's selectivity indices, a ranked neuron list, an
// optional selectivity-vs-ablation scatter, and the selected neuron's class means and top
// examples (tokens highlighted by activation). Python side: src/mechscope/widgets/selectivity.py.
import { decode, decodeFloat, decodeOptional, type EncodedArray, type NumericArray } from "../lib/codec";
import { formatValue } from "../lib/colors";
import { ensureStyle, h, redrawWhenAttached } from "../lib/dom";
import { visibleToken } from "../lib/tokens";

type Maybe = EncodedArray | Record<string, never>;

interface SelModel {
  get(name: "index" | "class_means" | "preferred" | "ex_neurons" | "ex_tokens" | "ex_acts" | "ex_class" | "ex_offset" | "ex_length"): EncodedArray;
  get(name: "floor" | "ablation_effect"): Maybe;
  get(name: "classes" | "ex_vocab"): string[];
  get(name: "title" | "ablation_metric"): string;
  get(name: "selected"): number;
  set(name: "selected", value: number): void;
  save_changes(): void;
  on(event: string, cb: () => void): void;
  off(event?: string, cb?: () => void): void;
}

const STYLE_ID = "mechscope-selectivity-style-v1";
const PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d", "#ff9da6", "#bab0ac"];
const BAR = "#4c78a8";
const ACCENT = "#f58518";
const NAN_COLOR = "rgb(128,128,128)";
const BINS = 40;
const HIST_W = 360;
const HIST_H = 130;
const SCAT_W = 360;
const SCAT_H = 240;
const PAD = { left: 46, right: 30, top: 8, bottom: 30 };

function ensureSelStyle(): void {
  ensureStyle();
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = `
.ms-sel .ms-sel-main { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.ms-sel .ms-sel-left { display: flex; flex-direction: column; gap: 6px; width: ${HIST_W}px; }
.ms-sel .ms-sel-detail { min-width: 320px; max-width: 560px; flex: 1 1 360px; }
.ms-sel .ms-sel-caption { font-weight: 600; font-size: 11px; color: var(--jp-ui-font-color1, #1f1f1f);
  display: flex; justify-content: space-between; align-items: center; }
.ms-sel .ms-sel-caption label { font-weight: normal; color: var(--jp-ui-font-color2, #555); }
.ms-sel canvas { display: block; cursor: pointer; outline: none; }
.ms-sel canvas:focus-visible { outline: 2px solid var(--jp-brand-color1, #1976d2); }
.ms-sel .ms-sel-list { max-height: 240px; overflow-y: auto; border: 1px solid var(--jp-border-color2, #ddd);
  border-radius: 2px; padding: 2px; }
.ms-sel .ms-sel-list button { display: grid; grid-template-columns: 64px 48px 60px 1fr; gap: 6px; width: 100%;
  text-align: left; font: inherit; font-size: 11px; padding: 1px 4px; border: 1px solid transparent; border-radius: 2px;
  background: transparent; color: var(--jp-ui-font-color1, #1f1f1f); cursor: pointer; align-items: center; }
.ms-sel .ms-sel-list button:hover { background: var(--jp-layout-color2, #eee); }
.ms-sel .ms-sel-list button[aria-pressed="true"] { border-color: ${ACCENT}; background: var(--jp-layout-color2, #eee); }
.ms-sel .ms-sel-list button:focus-visible { outline: 2px solid var(--jp-brand-color1, #1976d2); }
.ms-sel .ms-sel-list i { display: inline-block; width: 8px; height: 8px; border-radius: 4px; margin-right: 4px; }
.ms-sel .ms-sel-list .ms-mini { height: 6px; background: ${BAR}; border-radius: 1px; }
.ms-sel .ms-sel-list .ms-cls, .ms-sel .ms-sel-means .ms-cls { white-space: pre; overflow: hidden; text-overflow: ellipsis; }
.ms-sel .ms-sel-head { font-size: 14px; font-weight: 600; margin-bottom: 2px; }
.ms-sel .ms-sel-facts { color: var(--jp-ui-font-color2, #555); margin-bottom: 8px; }
.ms-sel .ms-sel-means { display: grid; grid-template-columns: minmax(60px, max-content) 220px auto; gap: 3px 8px;
  align-items: center; margin-bottom: 10px; }
.ms-sel .ms-sel-track { position: relative; height: 12px; background: var(--jp-layout-color2, #f0f0f0); }
.ms-sel .ms-sel-track .ms-fill { position: absolute; top: 0; height: 12px; }
.ms-sel .ms-sel-track .ms-zero { position: absolute; top: -2px; height: 16px; width: 1px; background: var(--jp-ui-font-color2, #777); }
.ms-sel .ms-sel-means .ms-pref { font-weight: 700; }
.ms-sel .ms-sel-num { font-family: var(--jp-code-font-family, monospace); font-size: 11px; }
.ms-sel .ms-sel-ex { margin: 4px 0 8px 0; line-height: 1.7; }
.ms-sel .ms-badge { display: inline-block; font-size: 10px; padding: 0 5px; border-radius: 8px; color: #fff; margin-right: 6px; white-space: pre; }
.ms-sel .ms-tok { white-space: pre-wrap; font-family: var(--jp-code-font-family, monospace); font-size: 12px;
  border-radius: 2px; padding: 1px 0; }
.ms-sel .ms-tok-nan { background: repeating-linear-gradient(45deg, rgba(128,128,128,0.6) 0 3px, transparent 3px 6px); }
.ms-sel .ms-legend { display: flex; flex-wrap: wrap; gap: 4px 10px; font-size: 10px; color: var(--jp-ui-font-color2, #555); }
.ms-sel .ms-legend span { white-space: pre; }
.ms-sel .ms-legend i { display: inline-block; width: 8px; height: 8px; border-radius: 4px; margin-right: 3px; }
`;
  document.head.appendChild(style);
}

function classColor(c: number): string {
  return c >= 0 ? PALETTE[c % PALETTE.length] : NAN_COLOR;
}

/** Short axis tick text: 0, 0.25, 0.5 ... */
function tick(v: number): string {
  return String(Number(v.toPrecision(3)));
}

function decodeMaybe(enc: Maybe): Float32Array | null {
  const values = decodeOptional(enc);
  return values ? Float32Array.from(values) : null;
}

interface Geometry {
  left: number;
  top: number;
  width: number;
  height: number;
  xlo: number;
  xhi: number;
  ylo: number;
  yhi: number;
}

function setupCanvas(canvas: HTMLCanvasElement, w: number, hgt: number): CanvasRenderingContext2D {
  const dpr = Math.max(1, Math.min(3, window.devicePixelRatio || 1));
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(hgt * dpr);
  canvas.style.width = `${w}px`;
  canvas.style.height = `${hgt}px`;
  const ctx = canvas.getContext("2d")!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);
  return ctx;
}

function render({ model, el }: { model: SelModel; el: HTMLElement }): () => void {
  ensureSelStyle();
  const root = h("div", "ms-root ms-sel");
  const title = h("div", "ms-title");
  const main = h("div", "ms-sel-main");
  const left = h("div", "ms-sel-left");
  const histCaption = h("div", "ms-sel-caption");
  const histText = h("span");
  const logLabel = h("label");
  const logBox = h("input");
  logBox.type = "checkbox";
  logLabel.append(logBox, document.createTextNode(" log counts"));
  histCaption.append(histText, logLabel);
  const hist = h("canvas", "ms-sel-hist");
  hist.tabIndex = 0;
  hist.setAttribute("role", "img");
  const scatCaption = h("div", "ms-sel-caption");
  const scatter = h("canvas", "ms-sel-scatter");
  scatter.tabIndex = 0;
  scatter.setAttribute("role", "img");
  const legend = h("div", "ms-legend");
  const listCaption = h("div", "ms-sel-caption");
  const list = h("div", "ms-sel-list");
  list.setAttribute("role", "list");
  left.append(histCaption, hist, scatCaption, scatter, legend, listCaption, list);
  const detail = h("div", "ms-sel-detail");
  detail.setAttribute("aria-live", "polite");
  main.append(left, detail);
  const tooltip = h("div", "ms-tooltip");
  root.append(title, main, tooltip);
  el.replaceChildren(root);

  let N = 0;
  let C = 0;
  let index: Float32Array = new Float32Array(0);
  let means: Float32Array = new Float32Array(0);
  let preferred: NumericArray = new Int32Array(0);
  let floor: Float32Array | null = null;
  let effect: Float32Array | null = null;
  let exNeurons: NumericArray = new Int32Array(0);
  let exTokens: NumericArray = new Int32Array(0);
  let exActs: Float32Array = new Float32Array(0);
  let exClass: NumericArray = new Int32Array(0);
  let exOffset: NumericArray = new Int32Array(0);
  let exLength: NumericArray = new Int32Array(0);
  let E = 0;
  let W = 0;
  let rankOf = new Map<number, number>(); // neuron -> row in ex_* arrays
  let bins: number[][] = []; // neuron ids per bin
  let nanBin: number[] = [];
  let histGeo: Geometry = { left: 0, top: 0, width: 1, height: 1, xlo: 0, xhi: 1, ylo: 0, yhi: 1 };
  let scatGeo: Geometry = { ...histGeo };
  let keyBin = -1;

  function loadData(): void {
    const cm = decodeFloat(model.get("class_means"));
    [C, N] = cm.shape;
    means = cm.values;
    index = decodeFloat(model.get("index")).values;
    preferred = decode(model.get("preferred")).values;
    floor = decodeMaybe(model.get("floor"));
    effect = decodeMaybe(model.get("ablation_effect"));
    exNeurons = decode(model.get("ex_neurons")).values;
    const et = decode(model.get("ex_tokens"));
    [, E, W] = et.shape;
    exTokens = et.values;
    exActs = decodeFloat(model.get("ex_acts")).values;
    exClass = decode(model.get("ex_class")).values;
    exOffset = decode(model.get("ex_offset")).values;
    exLength = decode(model.get("ex_length")).values;
    rankOf = new Map();
    for (let j = 0; j < exNeurons.length; j++) rankOf.set(exNeurons[j], j);
  }

  function textColor(): string {
    return getComputedStyle(root).color || "#333";
  }

  function select(neuron: number): void {
    if (!(neuron >= 0 && neuron < N) || model.get("selected") === neuron) return;
    model.set("selected", neuron); // fires change:selected, whose listener redraws
    model.save_changes();
  }

  // ---- histogram ----------------------------------------------------------------------
  /** Axis range: from min(0, lowest) to the highest index rounded up to one significant
   *  digit (0.36 -> 0.4), so layers whose indices are all small still spread over the bins. */
  function binRange(): [number, number] {
    let lo = 0;
    let hi = -Infinity;
    for (let i = 0; i < N; i++) {
      const v = index[i];
      if (Number.isFinite(v)) {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    if (!(hi > lo)) return [lo, lo + 1];
    const p = Math.pow(10, Math.floor(Math.log10(hi - lo)));
    hi = lo + Math.ceil((hi - lo) / p) * p;
    return [lo, hi];
  }

  function binOf(v: number): number {
    return Math.min(BINS - 1, Math.max(0, Math.floor(((v - histGeo.xlo) / (histGeo.xhi - histGeo.xlo)) * BINS)));
  }

  function drawHist(): void {
    const [lo, hi] = binRange();
    histGeo = { left: PAD.left, top: PAD.top, width: HIST_W - PAD.left - PAD.right, height: HIST_H - PAD.top - PAD.bottom, xlo: lo, xhi: hi, ylo: 0, yhi: 1 };
    bins = Array.from({ length: BINS }, () => []);
    nanBin = [];
    for (let i = 0; i < N; i++) {
      const v = index[i];
      if (Number.isFinite(v)) bins[binOf(v)].push(i);
      else nanBin.push(i);
    }
    const useLog = logBox.checked;
    const count = (n: number) => (useLog ? Math.log10(n + 1) : n);
    let maxCount = 1;
    for (const b of bins) maxCount = Math.max(maxCount, b.length);
    maxCount = Math.max(maxCount, nanBin.length);
    const ctx = setupCanvas(hist, HIST_W, HIST_H);
    const g = histGeo;
    const bw = g.width / BINS;
    const sel = model.get("selected");
    const selBin = Number.isFinite(index[sel]) ? binOf(index[sel]) : -1;
    for (let b = 0; b < BINS; b++) {
      const n = bins[b].length;
      if (!n) continue;
      const hgt = Math.max(2, (count(n) / count(maxCount)) * g.height);
      ctx.fillStyle = b === selBin ? ACCENT : BAR;
      ctx.fillRect(g.left + b * bw + 0.5, g.top + g.height - hgt, Math.max(1, bw - 1), hgt);
    }
    const fg = textColor();
    if (nanBin.length) {
      // NaN indices: a separate grey hatched bar right of the axis
      const hgt = Math.max(2, (count(nanBin.length) / count(maxCount)) * g.height);
      const x = g.left + g.width + 12;
      ctx.fillStyle = NAN_COLOR;
      ctx.fillRect(x, g.top + g.height - hgt, 14, hgt);
      ctx.strokeStyle = "rgba(255,255,255,0.8)";
      ctx.beginPath();
      for (let y = g.top + g.height - hgt; y < g.top + g.height; y += 5) {
        ctx.moveTo(x, y + 5);
        ctx.lineTo(x + 14, y);
      }
      ctx.stroke();
      ctx.fillStyle = fg;
      ctx.font = "10px sans-serif";
      ctx.textAlign = "center";
      ctx.fillText("NaN", x + 7, g.top + g.height + 12);
    }
    // axes
    ctx.strokeStyle = fg;
    ctx.globalAlpha = 0.6;
    ctx.beginPath();
    ctx.moveTo(g.left, g.top + g.height + 0.5);
    ctx.lineTo(g.left + g.width, g.top + g.height + 0.5);
    ctx.moveTo(g.left - 0.5, g.top);
    ctx.lineTo(g.left - 0.5, g.top + g.height);
    ctx.stroke();
    ctx.globalAlpha = 1;
    ctx.fillStyle = fg;
    ctx.font = "10px sans-serif";
    ctx.textAlign = "center";
    for (let k = 0; k <= 4; k++) {
      const v = lo + ((hi - lo) * k) / 4;
      ctx.fillText(tick(v), g.left + (g.width * k) / 4, g.top + g.height + 12);
    }
    ctx.fillText("selectivity index", g.left + g.width / 2, g.top + g.height + 25);
    ctx.textAlign = "right";
    ctx.fillText(String(maxCount), g.left - 4, g.top + 8);
    ctx.fillText("0", g.left - 4, g.top + g.height);
    ctx.save();
    ctx.translate(10, g.top + g.height / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText(useLog ? "neurons (log)" : "neurons", 0, 0);
    ctx.restore();
    // selected neuron's index
    if (Number.isFinite(index[sel])) {
      const x = g.left + ((index[sel] - lo) / (hi - lo)) * g.width;
      ctx.strokeStyle = ACCENT;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(x, g.top);
      ctx.lineTo(x, g.top + g.height);
      ctx.stroke();
      ctx.lineWidth = 1;
    }
    hist.dataset.plot = JSON.stringify(histGeo);
    hist.setAttribute("aria-label", `histogram of ${N} selectivity indices; arrow keys select the most selective neuron of each bar`);
  }

  /** The bin under the pointer: -2 for the NaN bar, -1 for none. */
  function histHit(x: number, y: number): number {
    const g = histGeo;
    if (y < g.top - 2 || y > g.top + g.height + 2) return -1;
    if (nanBin.length && x >= g.left + g.width + 10 && x <= g.left + g.width + 28) return -2;
    if (x < g.left || x >= g.left + g.width) return -1;
    return Math.min(BINS - 1, Math.floor(((x - g.left) / g.width) * BINS));
  }

  function bestIn(members: number[]): number {
    let best = -1;
    for (const i of members) if (best < 0 || index[i] > index[best]) best = i;
    return best;
  }

  function binMembers(b: number): number[] {
    return b === -2 ? nanBin : b >= 0 ? bins[b] : [];
  }

  // ---- scatter ------------------------------------------------------------------------
  function drawScatter(): void {
    const has = !!effect;
    scatter.style.display = has ? "block" : "none";
    scatCaption.style.display = has ? "flex" : "none";
    legend.style.display = has ? "flex" : "none";
    if (!effect) return;
    scatCaption.textContent = `selectivity vs ${model.get("ablation_metric")} (click a point)`;
    let [xlo, xhi] = binRange();
    let ylo = Infinity;
    let yhi = -Infinity;
    for (let i = 0; i < N; i++) {
      const v = effect[i];
      if (Number.isFinite(v)) {
        ylo = Math.min(ylo, v);
        yhi = Math.max(yhi, v);
      }
    }
    if (!Number.isFinite(ylo)) [ylo, yhi] = [0, 1];
    if (ylo === yhi) [ylo, yhi] = [ylo - 1, yhi + 1];
    const padY = (yhi - ylo) * 0.05;
    ylo -= padY;
    yhi += padY;
    const padX = (xhi - xlo) * 0.02;
    xlo -= padX;
    xhi += padX;
    scatGeo = { left: PAD.left, top: PAD.top, width: SCAT_W - PAD.left - PAD.right, height: SCAT_H - PAD.top - PAD.bottom - 12, xlo, xhi, ylo, yhi };
    const g = scatGeo;
    const ctx = setupCanvas(scatter, SCAT_W, SCAT_H);
    const fg = textColor();
    ctx.strokeStyle = fg;
    ctx.globalAlpha = 0.6;
    ctx.strokeRect(g.left - 0.5, g.top - 0.5, g.width + 1, g.height + 1);
    if (ylo < 0 && yhi > 0) {
      const y0 = g.top + ((yhi - 0) / (yhi - ylo)) * g.height;
      ctx.setLineDash([3, 3]);
      ctx.beginPath();
      ctx.moveTo(g.left, y0);
      ctx.lineTo(g.left + g.width, y0);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    ctx.globalAlpha = 1;
    const sel = model.get("selected");
    for (let i = 0; i < N; i++) {
      const [x, y, bad] = scatPos(i);
      ctx.fillStyle = bad ? NAN_COLOR : classColor(preferred[i]);
      ctx.globalAlpha = bad ? 0.9 : 0.75;
      ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
    }
    ctx.globalAlpha = 1;
    if (sel >= 0 && sel < N) {
      const [x, y] = scatPos(sel);
      ctx.strokeStyle = fg;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(x, y, 6, 0, Math.PI * 2);
      ctx.stroke();
      ctx.lineWidth = 1;
    }
    ctx.fillStyle = fg;
    ctx.font = "10px sans-serif";
    ctx.textAlign = "center";
    const base = g.top + g.height;
    ctx.fillText(tick(xlo + padX), g.left + 10, base + 24);
    ctx.fillText(tick(xhi - padX), g.left + g.width - 10, base + 24);
    ctx.fillText("selectivity index", g.left + g.width / 2, base + 24);
    ctx.textAlign = "right";
    ctx.fillText(tick(yhi - padY), g.left - 4, g.top + 8);
    ctx.fillText(tick(ylo + padY), g.left - 4, base);
    ctx.fillText("NaN", g.left - 4, base + 12);
    ctx.save();
    ctx.translate(10, g.top + g.height / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText(model.get("ablation_metric"), 0, 0);
    ctx.restore();
    scatter.dataset.plot = JSON.stringify(scatGeo);
    scatter.setAttribute("aria-label", `scatter of selectivity index against ${model.get("ablation_metric")} for ${N} neurons`);
    legend.replaceChildren();
    model.get("classes").forEach((c, k) => {
      const item = h("span");
      const dot = h("i");
      dot.style.background = classColor(k);
      item.append(dot, document.createTextNode(c));
      legend.append(item);
    });
    const nanItem = h("span");
    const nanDot = h("i");
    nanDot.style.background = NAN_COLOR;
    nanItem.append(nanDot, document.createTextNode("NaN (in the strip below / left)"));
    legend.append(nanItem);
  }

  /** Canvas position of neuron i; NaN/inf coordinates go to a strip below / left of the plot. */
  function scatPos(i: number): [number, number, boolean] {
    const g = scatGeo;
    const xv = index[i];
    const yv = effect ? effect[i] : NaN;
    const okX = Number.isFinite(xv);
    const okY = Number.isFinite(yv);
    const x = okX ? g.left + ((xv - g.xlo) / (g.xhi - g.xlo)) * g.width : g.left - 8;
    const y = okY ? g.top + ((g.yhi - yv) / (g.yhi - g.ylo)) * g.height : g.top + g.height + 9;
    return [x, y, !(okX && okY)];
  }

  function scatHit(x: number, y: number): number {
    let best = -1;
    let bestD = 64; // within 8 px
    for (let i = 0; i < N; i++) {
      const [px, py] = scatPos(i);
      const d = (px - x) ** 2 + (py - y) ** 2;
      if (d < bestD) {
        bestD = d;
        best = i;
      }
    }
    return best;
  }

  // ---- ranked list and detail ---------------------------------------------------------
  function buildList(): void {
    const classes = model.get("classes");
    listCaption.textContent = `${exNeurons.length} most selective neurons (with top examples)`;
    list.replaceChildren();
    for (let j = 0; j < exNeurons.length; j++) {
      const n = exNeurons[j];
      const b = h("button");
      b.type = "button";
      b.dataset.neuron = String(n);
      const bar = h("div", "ms-mini");
      const v = index[n];
      bar.style.width = `${Number.isFinite(v) ? Math.max(1, Math.min(1, v) * 60) : 60}px`;
      if (!Number.isFinite(v)) bar.style.background = NAN_COLOR;
      const cls = h("span", "ms-cls");
      const dot = h("i");
      dot.style.background = classColor(preferred[n]);
      cls.append(dot, document.createTextNode(classes[preferred[n]] ?? "?"));
      b.append(h("span", "ms-sel-num", `n${n}`), h("span", "ms-sel-num", formatValue(v)), bar, cls);
      b.setAttribute("aria-label", `neuron ${n}, selectivity ${formatValue(v)}, prefers ${classes[preferred[n]] ?? "?"}`);
      b.addEventListener("click", () => select(n));
      b.addEventListener("keydown", (ev) => {
        const step = ev.key === "ArrowDown" ? 1 : ev.key === "ArrowUp" ? -1 : 0;
        if (!step) return;
        ev.preventDefault();
        const next = list.children[j + step] as HTMLButtonElement | undefined;
        if (next) {
          next.focus();
          next.click();
        }
      });
      list.append(b);
    }
  }

  function markList(sel: number): void {
    for (const child of Array.from(list.children)) {
      const b = child as HTMLButtonElement;
      const on = Number(b.dataset.neuron) === sel;
      b.setAttribute("aria-pressed", on ? "true" : "false");
      if (on && typeof b.scrollIntoView === "function") {
        const top = b.offsetTop - list.offsetTop;
        if (top < list.scrollTop || top > list.scrollTop + list.clientHeight - b.offsetHeight) list.scrollTop = top - 40;
      }
    }
  }

  function drawDetail(sel: number): void {
    const classes = model.get("classes");
    detail.replaceChildren();
    detail.dataset.neuron = String(sel);
    const rank = (() => {
      let r = 0;
      const v = index[sel];
      for (let i = 0; i < N; i++) if (index[i] > v) r++;
      return r + 1;
    })();
    detail.append(h("div", "ms-sel-head", `neuron ${sel}`));
    const facts = [`selectivity ${formatValue(index[sel])} (rank ${rank} of ${N})`, `prefers ${classes[preferred[sel]] ?? "?"}`];
    if (floor) facts.push(`floor ${formatValue(floor[sel])}`);
    if (effect) facts.push(`${model.get("ablation_metric")} ${formatValue(effect[sel])}`);
    detail.append(h("div", "ms-sel-facts", facts.join(" · ")));

    // per-class mean bars
    detail.append(h("div", "ms-sel-caption", "mean activation per class"));
    const box = h("div", "ms-sel-means");
    let lo = 0;
    let hi = 0;
    for (let c = 0; c < C; c++) {
      const v = means[c * N + sel];
      if (Number.isFinite(v)) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    }
    if (hi === lo) hi = lo + 1;
    for (let c = 0; c < C; c++) {
      const v = means[c * N + sel];
      const name = h("span", c === preferred[sel] ? "ms-cls ms-pref" : "ms-cls", classes[c] ?? String(c));
      const track = h("div", "ms-sel-track");
      track.dataset.cls = String(c);
      const zero = h("div", "ms-zero");
      zero.style.left = `${((0 - lo) / (hi - lo)) * 100}%`;
      const fill = h("div", "ms-fill");
      if (Number.isFinite(v)) {
        fill.style.left = `${((Math.min(0, v) - lo) / (hi - lo)) * 100}%`;
        fill.style.width = `${(Math.abs(v) / (hi - lo)) * 100}%`;
        fill.style.background = classColor(c);
      } else {
        fill.style.left = "0";
        fill.style.width = "100%";
        fill.className = "ms-fill ms-tok-nan";
      }
      track.append(fill, zero);
      box.append(name, track, h("span", "ms-sel-num", formatValue(v)));
    }
    detail.append(box);

    // top examples
    const j = rankOf.get(sel);
    detail.append(h("div", "ms-sel-caption", "top activating examples"));
    if (j === undefined) {
      detail.append(h("div", "ms-note", `top examples are kept for the ${exNeurons.length} most selective neurons only; build the widget with a larger top_n to see this one's.`));
      return;
    }
    const vocab = model.get("ex_vocab");
    let peak = 0;
    for (let k = 0; k < E * W; k++) {
      const a = exActs[j * E * W + k];
      if (Number.isFinite(a) && exTokens[j * E * W + k] >= 0) peak = Math.max(peak, Math.abs(a));
    }
    if (peak === 0) peak = 1;
    for (let e = 0; e < E; e++) {
      const c = exClass[j * E + e];
      if (c < 0) continue;
      const row = h("div", "ms-sel-ex");
      const badge = h("span", "ms-badge", classes[c] ?? "?");
      badge.style.background = classColor(c);
      row.append(badge);
      let rowPeak = -Infinity;
      if (exOffset[j * E + e] > 0) row.append(h("span", "ms-note", "… "));
      let shown = 0;
      for (let w = 0; w < W; w++) {
        const k = (j * E + e) * W + w;
        const ti = exTokens[k];
        if (ti < 0) break;
        const a = exActs[k];
        const span = h("span", "ms-tok", visibleToken(vocab[ti] ?? ""));
        if (Number.isFinite(a)) {
          const alpha = Math.min(1, Math.abs(a) / peak) * 0.85;
          span.style.background = a >= 0 ? `rgba(245,133,24,${alpha.toFixed(3)})` : `rgba(76,120,168,${alpha.toFixed(3)})`;
          rowPeak = Math.max(rowPeak, a);
        } else {
          span.classList.add("ms-tok-nan");
        }
        span.title = `activation ${formatValue(a)}`;
        span.dataset.act = String(a);
        row.append(span);
        shown++;
      }
      if (exOffset[j * E + e] + shown < exLength[j * E + e]) row.append(h("span", "ms-note", " …"));
      row.append(h("span", "ms-note", `   peak ${formatValue(rowPeak)}`));
      detail.append(row);
    }
  }

  function update(): void {
    const sel = model.get("selected");
    drawHist();
    drawScatter();
    markList(sel);
    drawDetail(sel);
  }

  function full(): void {
    loadData();
    title.textContent = model.get("title");
    histText.textContent = `selectivity of ${N} neurons (click a bar)`;
    buildList();
    update();
    el.dataset.msReady = "1";
  }

  // ---- events -------------------------------------------------------------------------
  function tip(text: string, ev: MouseEvent): void {
    const r = root.getBoundingClientRect();
    tooltip.textContent = text;
    tooltip.style.display = "block";
    tooltip.style.left = `${Math.min(ev.clientX - r.left + 14, Math.max(0, root.clientWidth - tooltip.offsetWidth - 4))}px`;
    tooltip.style.top = `${ev.clientY - r.top + 14}px`;
  }
  const hide = () => {
    tooltip.style.display = "none";
  };
  function local(ev: MouseEvent, c: HTMLCanvasElement): [number, number] {
    const r = c.getBoundingClientRect();
    return [ev.clientX - r.left, ev.clientY - r.top];
  }
  hist.addEventListener("mousemove", (ev) => {
    const b = histHit(...local(ev, hist));
    const members = binMembers(b);
    if (b === -1 || !members.length) return hide();
    const best = bestIn(members);
    const range = b === -2 ? "NaN" : `${formatValue(histGeo.xlo + ((histGeo.xhi - histGeo.xlo) * b) / BINS)}–${formatValue(histGeo.xlo + ((histGeo.xhi - histGeo.xlo) * (b + 1)) / BINS)}`;
    tip(`${range}: ${members.length} neuron${members.length === 1 ? "" : "s"}\nclick selects n${best}`, ev);
  });
  hist.addEventListener("click", (ev) => {
    const b = histHit(...local(ev, hist));
    const members = binMembers(b);
    if (members.length) {
      keyBin = b;
      select(bestIn(members));
    }
  });
  hist.addEventListener("keydown", (ev) => {
    const step = ev.key === "ArrowRight" ? 1 : ev.key === "ArrowLeft" ? -1 : 0;
    if (!step) return;
    ev.preventDefault();
    let b = keyBin < 0 ? (step > 0 ? -1 : BINS) : keyBin;
    do b += step;
    while (b >= 0 && b < BINS && !bins[b].length);
    if (b >= 0 && b < BINS) {
      keyBin = b;
      select(bestIn(bins[b]));
    }
  });
  scatter.addEventListener("mousemove", (ev) => {
    const i = scatHit(...local(ev, scatter));
    if (i < 0) return hide();
    const classes = model.get("classes");
    tip(`n${i}: selectivity ${formatValue(index[i])}, ${model.get("ablation_metric")} ${formatValue(effect ? effect[i] : NaN)}\nprefers ${classes[preferred[i]] ?? "?"}`, ev);
  });
  scatter.addEventListener("click", (ev) => {
    const i = scatHit(...local(ev, scatter));
    if (i >= 0) select(i);
  });
  hist.addEventListener("mouseleave", hide);
  scatter.addEventListener("mouseleave", hide);
  logBox.addEventListener("change", () => drawHist());

  full();
  const stopWaiting = redrawWhenAttached(el, update);
  const onSelected = () => update();
  const data = ["index", "class_means", "preferred", "floor", "ablation_effect", "ablation_metric", "classes", "ex_neurons", "ex_tokens", "ex_acts", "ex_class", "ex_offset", "ex_length", "ex_vocab", "title"];
  const onData = () => full();
  model.on("change:selected", onSelected);
  for (const n of data) model.on(`change:${n}`, onData);
  return () => {
    stopWaiting();
    model.off("change:selected", onSelected);
    for (const n of data) model.off(`change:${n}`, onData);
  };
}

export default { render };
