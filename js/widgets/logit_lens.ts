// LogitLens widget: layers x positions grid on canvas, each cell's top-1 token drawn as canvas
// text, coloured by top-1 probability / target probability / target rank (log scale).
// Python side: src/mechscope/widgets/logit_lens.py.
import { decode, type EncodedArray } from "../lib/codec";
import { colorBarCanvas, colorTable, INVALID_RGB } from "../lib/colors";
import { choiceSelect, ensureStyle, fillColumnLabels, h, redrawWhenAttached } from "../lib/dom";
import { visibleToken } from "../lib/tokens";

type Mode = "top1" | "target_prob" | "target_rank";

interface LensModel {
  get(name: "top_ids" | "top_probs" | "vocab_ids"): EncodedArray;
  get(name: "target_prob" | "target_rank"): EncodedArray | Record<string, never>;
  get(name: "vocab" | "tokens" | "layer_labels"): string[];
  get(name: "target"): string | null;
  get(name: "title"): string;
  get(name: "color_mode"): Mode;
  get(name: "hovered"): number[];
  set(name: "color_mode", value: Mode): void;
  set(name: "hovered", value: number[]): void;
  save_changes(): void;
  on(event: string, cb: () => void): void;
  off(event?: string, cb?: () => void): void;
}

const STYLE_ID = "mechscope-logit-lens-style-v1";
const MAX_CANVAS_W = 16000; // stay well under browsers' canvas size limits
const MAX_GRID_H = 640;
const TEXT_MIN_W = 30; // draw cell text only when cells are at least this wide ...
const TEXT_MIN_H = 13; // ... and this tall

function ensureLensStyle(): void {
  ensureStyle();
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = `
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
  document.head.appendChild(style);
}

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

function render({ model, el }: { model: LensModel; el: HTMLElement }): () => void {
  ensureLensStyle();
  const root = h("div", "ms-root ms-lens");
  const head = h("div", "ms-lens-head");
  const title = h("div", "ms-title");
  const label = h("label", undefined, "colour by ");
  const { select, options } = choiceSelect("colour cells by", [
    ["top1", "top-1 probability"], ["target_prob", "target probability"], ["target_rank", "target rank (log)"],
  ]);
  const optProb = options.target_prob;
  const optRank = options.target_rank;
  label.append(select);
  const targetInfo = h("span", "ms-note");
  head.append(title, label, targetInfo);
  const body = h("div", "ms-lens-body");
  const rowLabels = h("div", "ms-rowlabels");
  const scroll = h("div", "ms-scroll");
  const inner = h("div", "ms-lens-inner");
  const canvas = h("canvas", "ms-canvas");
  canvas.tabIndex = 0;
  canvas.setAttribute("role", "img");
  const cursor = h("div", "ms-cursor");
  const colLabels = h("div", "ms-collabels");
  inner.append(canvas, cursor, colLabels);
  scroll.append(inner);
  const colorbar = h("div", "ms-colorbar");
  body.append(rowLabels, scroll, colorbar);
  const note = h("div", "ms-note", "hover or focus the grid and use the arrow keys for each cell's top-k tokens");
  const tooltip = h("div", "ms-tooltip");
  tooltip.setAttribute("role", "status"); // read out as the keyboard cursor moves
  root.append(head, body, note, tooltip);
  el.replaceChildren(root);

  let L = 0; // layers
  let P = 0; // positions
  let K = 0;
  let ids: Float32Array = new Float32Array(0);
  let probs: Float32Array = new Float32Array(0);
  let tprob: Float32Array | null = null;
  let trank: Float32Array | null = null;
  let names = new Map<number, string>();
  let cellW = 1;
  let cellH = 1;
  let keyCell: [number, number] = [0, 0]; // [layer index, position]

  function loadData(): void {
    const di = decode(model.get("top_ids"));
    [L, P, K] = di.shape;
    ids = di.values;
    probs = decode(model.get("top_probs")).values;
    const vocabIds = decode(model.get("vocab_ids")).values;
    const vocab = model.get("vocab");
    names = new Map();
    for (let i = 0; i < vocabIds.length; i++) names.set(vocabIds[i], vocab[i] ?? "");
    const tp = model.get("target_prob");
    const tr = model.get("target_rank");
    tprob = tp && "data" in tp ? decode(tp as EncodedArray).values : null;
    trank = tr && "data" in tr ? decode(tr as EncodedArray).values : null;
  }

  function mode(): Mode {
    const m = model.get("color_mode");
    return (m === "target_prob" || m === "target_rank") && tprob && trank ? m : "top1";
  }

  /** Colour value in [0, 1] per cell (NaN for invalid), and the colour bar's end labels. */
  function scaled(): { t: Float32Array; hi: string; lo: string; what: string } {
    const n = L * P;
    const t = new Float32Array(n);
    const m = mode();
    if (m === "target_rank" && trank) {
      let maxRank = 1;
      for (let i = 0; i < n; i++) if (Number.isFinite(trank[i]) && trank[i] > maxRank) maxRank = trank[i];
      const denom = Math.log10(maxRank + 1);
      for (let i = 0; i < n; i++) {
        const r = trank[i];
        t[i] = Number.isFinite(r) && r >= 0 ? 1 - Math.log10(r + 1) / denom : NaN;
      }
      return { t, hi: "rank 0", lo: `rank ${maxRank}`, what: `rank of ${JSON.stringify(model.get("target") ?? "")} (log scale)` };
    }
    const src = m === "target_prob" && tprob ? tprob : null;
    for (let i = 0; i < n; i++) {
      const v = src ? src[i] : probs[i * K];
      t[i] = Number.isFinite(v) ? Math.max(0, Math.min(1, v)) : NaN;
    }
    const what = src ? `p(${JSON.stringify(model.get("target") ?? "")})` : "top-1 probability";
    return { t, hi: "1", lo: "0", what };
  }

  function draw(): void {
    loadData();
    const table = colorTable("viridis");
    title.textContent = model.get("title");
    const target = model.get("target");
    const hasTarget = !!(tprob && trank);
    optProb.disabled = !hasTarget;
    optRank.disabled = !hasTarget;
    targetInfo.textContent = hasTarget ? `target ${JSON.stringify(target ?? "")}` : "no target token";
    select.value = mode();

    cellW = Math.max(2, Math.min(64, Math.floor(MAX_CANVAS_W / Math.max(P, 1))));
    cellH = Math.max(3, Math.min(22, Math.floor(MAX_GRID_H / Math.max(L, 1))));
    const dpr = Math.max(1, Math.min(3, window.devicePixelRatio || 1));
    const cssW = P * cellW;
    const cssH = L * cellH;
    canvas.width = Math.round(cssW * Math.min(dpr, 32000 / Math.max(cssW, 1)));
    canvas.height = Math.round(cssH * dpr);
    canvas.style.width = `${cssW}px`;
    canvas.style.height = `${cssH}px`;
    const ctx = canvas.getContext("2d")!;
    ctx.setTransform(canvas.width / cssW, 0, 0, canvas.height / cssH, 0, 0);
    const { t, hi, lo, what } = scaled();
    const showText = cellW >= TEXT_MIN_W && cellH >= TEXT_MIN_H;
    ctx.font = `${Math.min(12, cellH - 3)}px ${getComputedStyle(root).getPropertyValue("--jp-code-font-family").trim() || "monospace"}`;
    ctx.textBaseline = "middle";
    ctx.textAlign = "center";
    const fitCache = new Map<string, string>();
    for (let l = 0; l < L; l++) {
      const y = (L - 1 - l) * cellH; // last layer on top
      for (let p = 0; p < P; p++) {
        const v = t[l * P + p];
        let rgb: [number, number, number];
        if (Number.isNaN(v)) rgb = INVALID_RGB;
        else {
          const k = Math.round(v * 255) * 3;
          rgb = [table[k], table[k + 1], table[k + 2]];
        }
        ctx.fillStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
        ctx.fillRect(p * cellW, y, cellW, cellH);
        if (Number.isNaN(v)) {
          // NaN/inf: grey with a diagonal stroke, distinct from every colour of the scale
          ctx.strokeStyle = "rgba(255,255,255,0.8)";
          ctx.lineWidth = 1;
          ctx.beginPath();
          ctx.moveTo(p * cellW, y + cellH);
          ctx.lineTo(p * cellW + cellW, y);
          ctx.stroke();
        }
        if (showText) {
          const lum = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
          ctx.fillStyle = lum > 140 ? "#000" : "#fff";
          const tok = names.get(ids[(l * P + p) * K]) ?? "?";
          ctx.fillText(fitText(ctx, visibleToken(tok), cellW - 4, fitCache), p * cellW + cellW / 2, y + cellH / 2 + 0.5);
        }
      }
    }
    canvas.setAttribute("aria-label", `logit lens, ${L} layers by ${P} positions, coloured by ${what}`);
    canvas.dataset.cellW = String(cellW);
    canvas.dataset.cellH = String(cellH);

    const layerLabels = model.get("layer_labels");
    rowLabels.replaceChildren();
    // many layers: label every step-th row so labels stay legible (rows are >= 3 px)
    const step = Math.ceil(10 / cellH);
    for (let l = L - 1; l >= 0; l -= step) {
      const d = h("div", undefined, layerLabels[l] ?? String(l));
      d.style.height = `${cellH * Math.min(step, l + 1)}px`;
      d.style.lineHeight = `${cellH}px`;
      d.style.fontSize = `${Math.min(11, Math.max(9, cellH - 1))}px`;
      d.style.overflow = "visible";
      rowLabels.append(d);
    }
    const tokens = model.get("tokens");
    fillColumnLabels(colLabels, tokens.slice(0, P), cellW, (p) => JSON.stringify(tokens[p] ?? ""));
    colorbar.replaceChildren();
    const bar = colorBarCanvas(table, cssH);
    const nanKey = h("div", undefined, "grey / = NaN");
    colorbar.append(h("div", undefined, hi), bar, h("div", undefined, lo), h("div", undefined, what), nanKey);
    placeCursor(false);
    root.dataset.mode = mode();
    el.dataset.msReady = "1";
  }

  function tipText(l: number, p: number): string {
    const layerLabels = model.get("layer_labels");
    const tokens = model.get("tokens");
    const lines = [`${layerLabels[l] ?? l}  |  position ${p} ${JSON.stringify(tokens[p] ?? "")}`];
    for (let k = 0; k < K; k++) {
      const i = (l * P + p) * K + k;
      lines.push(`${String(k + 1).padStart(2)}. ${JSON.stringify(names.get(ids[i]) ?? "?")}  ${fmtProb(probs[i])}`);
    }
    if (tprob && trank) {
      const r = trank[l * P + p];
      lines.push(`target ${JSON.stringify(model.get("target") ?? "")}: p ${fmtProb(tprob[l * P + p])}, rank ${Number.isFinite(r) ? r : "?"}`);
    }
    return lines.join("\n");
  }

  function showTip(l: number, p: number, left: number, top: number): void {
    tooltip.textContent = tipText(l, p);
    tooltip.style.display = "block";
    const maxLeft = Math.max(0, root.clientWidth - tooltip.offsetWidth - 4);
    tooltip.style.left = `${Math.min(left + 14, maxLeft)}px`;
    tooltip.style.top = `${top + 14}px`;
    const hv = model.get("hovered");
    if (!hv || hv[0] !== l || hv[1] !== p) {
      model.set("hovered", [l, p]);
      model.save_changes();
    }
  }

  function placeCursor(show: boolean): void {
    cursor.style.left = `${keyCell[1] * cellW}px`;
    cursor.style.top = `${(L - 1 - keyCell[0]) * cellH}px`;
    cursor.style.width = `${cellW}px`;
    cursor.style.height = `${cellH}px`;
    if (show) cursor.style.display = "block";
  }

  canvas.addEventListener("mousemove", (ev) => {
    const rect = canvas.getBoundingClientRect();
    const p = Math.floor(((ev.clientX - rect.left) / rect.width) * P);
    const row = Math.floor(((ev.clientY - rect.top) / rect.height) * L);
    if (p < 0 || row < 0 || p >= P || row >= L) return;
    const rootRect = root.getBoundingClientRect();
    showTip(L - 1 - row, p, ev.clientX - rootRect.left, ev.clientY - rootRect.top);
  });
  canvas.addEventListener("mouseleave", () => {
    tooltip.style.display = "none";
  });
  canvas.addEventListener("blur", () => {
    tooltip.style.display = "none";
    cursor.style.display = "none";
  });
  canvas.addEventListener("keydown", (ev) => {
    const moves: Record<string, [number, number]> = {
      ArrowUp: [1, 0], ArrowDown: [-1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1],
      Home: [0, -P], End: [0, P],
    };
    const d = moves[ev.key];
    if (ev.key === "Escape") {
      tooltip.style.display = "none";
      return;
    }
    if (!d) return;
    ev.preventDefault();
    keyCell = [Math.max(0, Math.min(L - 1, keyCell[0] + d[0])), Math.max(0, Math.min(P - 1, keyCell[1] + d[1]))];
    placeCursor(true);
    // keep the cursor cell in view when the grid scrolls horizontally
    const x0 = keyCell[1] * cellW;
    if (x0 < scroll.scrollLeft) scroll.scrollLeft = x0;
    else if (x0 + cellW > scroll.scrollLeft + scroll.clientWidth) scroll.scrollLeft = x0 + cellW - scroll.clientWidth;
    const cr = canvas.getBoundingClientRect();
    const rootRect = root.getBoundingClientRect();
    showTip(keyCell[0], keyCell[1], cr.left - rootRect.left + x0 + cellW / 2, cr.top - rootRect.top + (L - 1 - keyCell[0]) * cellH + cellH / 2);
  });
  select.addEventListener("change", () => {
    model.set("color_mode", select.value as Mode);
    model.save_changes(); // the change:color_mode listener redraws
  });

  draw();
  const stopWaiting = redrawWhenAttached(el, draw);
  const names_ = ["top_ids", "top_probs", "vocab_ids", "vocab", "tokens", "layer_labels", "target", "target_prob", "target_rank", "color_mode", "title"];
  const redraw = () => draw();
  for (const n of names_) model.on(`change:${n}`, redraw);
  return () => {
    stopWaiting();
    for (const n of names_) model.off(`change:${n}`, redraw);
  };
}

export default { render };
