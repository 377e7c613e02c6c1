// PatchingMap widget: a PatchingResult as a layers x positions (or heads) map on a diverging
// scale centred on 0. Hover / arrow keys show a cell; a click or Enter selects it and Python
// (when live) re-runs that patch and replies through `detail` with the top tokens before and
// after, drawn beside the map as text. Python side: src/mechscope/widgets/patching_map.py.
import { decode, type EncodedArray } from "../lib/codec";
import { colorBarCanvas, colorIndex, colorTable, formatValue, INVALID_RGB, valueRange } from "../lib/colors";
import { choiceSelect, ensureStyle, fillColumnLabels, h, redrawWhenAttached } from "../lib/dom";
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
}

interface ErrorDetail {
  kind: "error";
  cell: number[];
  message: string;
}

type Detail = RerunDetail | ErrorDetail | Record<string, never>;

interface PatchingModel {
  get(name: "effect"): EncodedArray;
  get(name: "clean_metric" | "corrupt_metric"): number | null;
  get(name: "metric_name" | "title" | "note" | "positions_text" | "clean_prompt" | "corrupt_prompt"): string;
  get(name: "column_kind"): "position" | "head";
  get(name: "row_labels" | "col_labels" | "col_clean" | "col_corrupt"): string[];
  get(name: "columns" | "selected" | "hovered"): number[];
  get(name: "normalized" | "can_normalize" | "live"): boolean;
  get(name: "offline"): boolean | undefined;
  get(name: "detail"): Detail;
  set(name: "normalized", value: boolean): void;
  set(name: "selected" | "hovered", value: number[]): void;
  save_changes(): void;
  on(event: string, cb: () => void): void;
  off(event?: string, cb?: () => void): void;
}

const STYLE_ID = "mechscope-patching-map-style-v1";
const MAX_CANVAS_W = 16000; // stay well under browsers' canvas size limits
const FIT_W = 900; // widest map drawn without narrowing cells below what their labels want
const MAX_GRID_H = 640;
const TEXT_MIN_W = 34; // draw each cell's number only when cells are at least this wide ...
const TEXT_MIN_H = 14; // ... and this tall

function ensurePatchingStyle(): void {
  ensureStyle();
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = `
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
`;
  document.head.appendChild(style);
}

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

function render({ model, el }: { model: PatchingModel; el: HTMLElement }): () => void {
  ensurePatchingStyle();
  const root = h("div", "ms-root ms-heatmap ms-pmap");
  const head = h("div", "ms-pmap-head");
  const title = h("div", "ms-title");
  const label = h("label", undefined, "cells: ");
  const { select, options } = choiceSelect("cell values", [
    ["normalized", "normalised (0 = corrupt, 1 = clean)"], ["raw", "raw (metric − corrupt)"],
  ]);
  const optNorm = options.normalized;
  label.append(select);
  head.append(title, label);
  const prompts = h("div", "ms-pmap-prompts");
  const body = h("div", "ms-pmap-body");
  const mapBox = h("div", "ms-pmap-map");
  const rowLabels = h("div", "ms-rowlabels");
  const scroll = h("div", "ms-scroll");
  const inner = h("div", "ms-pmap-inner");
  const canvas = h("canvas", "ms-canvas");
  canvas.tabIndex = 0;
  canvas.setAttribute("role", "grid");
  const cursor = h("div", "ms-cursor");
  const selBox = h("div", "ms-pmap-sel");
  const colLabels = h("div", "ms-collabels");
  inner.append(canvas, cursor, selBox, colLabels);
  scroll.append(inner);
  const colorbar = h("div", "ms-colorbar");
  mapBox.append(rowLabels, scroll, colorbar);
  const detail = h("div", "ms-pmap-detail");
  detail.setAttribute("aria-live", "polite");
  body.append(mapBox, detail);
  const note = h("div", "ms-note");
  const tooltip = h("div", "ms-tooltip");
  tooltip.setAttribute("role", "status"); // read out as the keyboard cursor moves
  root.append(head, prompts, body, note, tooltip);
  el.replaceChildren(root);

  let R = 0; // rows (layers)
  let C = 0; // columns (positions or heads)
  let effect: Float32Array = new Float32Array(0);
  let cellW = 1;
  let cellH = 1;
  let keyCell: [number, number] = [0, 0];

  function span(): number | null {
    const c = model.get("clean_metric");
    const k = model.get("corrupt_metric");
    if (c === null || k === null || c === undefined || k === undefined) return null;
    const s = c - k;
    return s !== 0 && Number.isFinite(s) ? s : null;
  }

  function normalizedOn(): boolean {
    return model.get("normalized") && model.get("can_normalize") && span() !== null;
  }

  /** What cell i shows in the current mode. */
  function shown(i: number): number {
    const e = effect[i];
    const s = span();
    return normalizedOn() && s !== null ? e / s : e;
  }

  function cellName(r: number, c: number): string {
    const rl = model.get("row_labels");
    const layer = rl[r] ?? `L${r}`;
    if (model.get("column_kind") === "head") {
      return `${layer}  |  head ${model.get("col_labels")[c] ?? c} (positions: ${model.get("positions_text")})`;
    }
    const clean = model.get("col_clean")[c] ?? "";
    const corrupt = model.get("col_corrupt")[c] ?? "";
    const pos = model.get("columns")[c] ?? c;
    const toks = clean === corrupt ? JSON.stringify(clean) : `${JSON.stringify(clean)} → ${JSON.stringify(corrupt)}`;
    return `${layer}  |  position ${pos} ${toks}`;
  }

  function valueLines(r: number, c: number): string[] {
    const i = r * C + c;
    const e = effect[i];
    const k = model.get("corrupt_metric");
    const s = span();
    const lines = [`${model.get("metric_name")}: ${k === null ? "n/a" : formatValue(k + e)} (patched)`];
    const parts = [];
    if (s !== null && model.get("can_normalize")) parts.push(`normalised: ${formatValue(e / s)}`);
    parts.push(`minus corrupt: ${formatValue(e)}`);
    lines.push(parts.join("   "));
    return lines;
  }

  function draw(): void {
    const dec = decode(model.get("effect"));
    [R, C] = dec.shape;
    effect = dec.values;
    title.textContent = model.get("title");
    prompts.textContent = `clean:   ${JSON.stringify(model.get("clean_prompt"))}\ncorrupt: ${JSON.stringify(model.get("corrupt_prompt"))}`;
    optNorm.disabled = !model.get("can_normalize") || span() === null;
    select.value = normalizedOn() ? "normalized" : "raw";

    const n = R * C;
    const vals = new Float32Array(n);
    for (let i = 0; i < n; i++) vals[i] = shown(i);
    const range = valueRange(vals, "diverging");
    const table = colorTable("diverging");

    // cells as wide as their labels want (within 48..96 px) while the map fits FIT_W; many
    // columns get narrower cells (vertical labels, no numbers) and scroll beyond it
    const cl = model.get("col_labels");
    let chars = 1;
    for (const label of cl) chars = Math.max(chars, Array.from(visibleToken(label)).length);
    const want = Math.max(48, Math.min(96, chars * 7 + 10));
    cellW = Math.max(Math.min(want, Math.floor(FIT_W / Math.max(C, 1))), Math.min(18, Math.floor(MAX_CANVAS_W / Math.max(C, 1))));
    cellW = Math.max(2, cellW);
    cellH = Math.max(3, Math.min(26, Math.floor(MAX_GRID_H / Math.max(R, 1))));
    const dpr = Math.max(1, Math.min(3, window.devicePixelRatio || 1));
    const cssW = C * cellW;
    const cssH = R * cellH;
    canvas.width = Math.round(cssW * Math.min(dpr, 32000 / Math.max(cssW, 1)));
    canvas.height = Math.round(cssH * dpr);
    canvas.style.width = `${cssW}px`;
    canvas.style.height = `${cssH}px`;
    const ctx = canvas.getContext("2d")!;
    ctx.setTransform(canvas.width / cssW, 0, 0, canvas.height / cssH, 0, 0);
    const showText = cellW >= TEXT_MIN_W && cellH >= TEXT_MIN_H;
    ctx.font = `${Math.min(11, cellH - 4)}px ${getComputedStyle(root).getPropertyValue("--jp-code-font-family").trim() || "monospace"}`;
    ctx.textBaseline = "middle";
    ctx.textAlign = "center";
    for (let r = 0; r < R; r++) {
      for (let c = 0; c < C; c++) {
        const v = vals[r * C + c];
        let rgb: [number, number, number];
        const bad = !Number.isFinite(v);
        if (bad) rgb = INVALID_RGB;
        else {
          const k = colorIndex(v, range) * 3;
          rgb = [table[k], table[k + 1], table[k + 2]];
        }
        ctx.fillStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
        ctx.fillRect(c * cellW, r * cellH, cellW, cellH);
        if (bad) {
          // NaN/inf: grey with a diagonal stroke, distinct from every colour of the scale
          ctx.strokeStyle = "rgba(255,255,255,0.8)";
          ctx.lineWidth = 1;
          ctx.beginPath();
          ctx.moveTo(c * cellW, (r + 1) * cellH);
          ctx.lineTo((c + 1) * cellW, r * cellH);
          ctx.stroke();
        }
        if (showText) {
          const lum = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
          ctx.fillStyle = lum > 140 ? "#000" : "#fff";
          ctx.fillText(short(v), c * cellW + cellW / 2, r * cellH + cellH / 2 + 0.5);
        }
      }
    }
    const what = normalizedOn() ? "normalised effect (0 = corrupt, 1 = clean)" : `${model.get("metric_name")} − corrupt`;
    canvas.setAttribute("aria-label", `patching map, ${R} layers by ${C} ${model.get("column_kind")}s, ${what}; arrow keys move, Enter selects a cell`);
    canvas.dataset.cellW = String(cellW);
    canvas.dataset.cellH = String(cellH);
    canvas.dataset.lo = String(range.lo);
    canvas.dataset.hi = String(range.hi);

    const rl = model.get("row_labels");
    rowLabels.replaceChildren();
    const step = Math.ceil(10 / cellH); // label every step-th row when rows are thin
    for (let r = 0; r < R; r++) {
      const d = h("div", undefined, r % step === 0 ? (rl[r] ?? String(r)) : "");
      d.style.height = `${cellH}px`;
      d.style.lineHeight = `${cellH}px`;
      d.style.fontSize = `${Math.min(11, Math.max(9, cellH - 1))}px`;
      d.style.overflow = "visible";
      rowLabels.append(d);
    }
    fillColumnLabels(colLabels, cl.slice(0, C), cellW, (c) => cellName(0, c).split("  |  ")[1]);
    colorbar.replaceChildren();
    const bar = colorBarCanvas(table, cssH);
    const barBox = h("div", "ms-pmap-bar");
    const zeroTick = h("span", "ms-pmap-zero", "– 0");
    zeroTick.style.top = `${bar.height / 2 - 7}px`;
    barBox.append(bar, zeroTick);
    colorbar.append(h("div", undefined, formatValue(range.hi)), barBox, h("div", undefined, formatValue(range.lo)),
      h("div", undefined, normalizedOn() ? "normalised" : "metric − corrupt"), h("div", undefined, "hatched grey = NaN/inf"));
    const notes = [model.get("note")].filter((x) => x);
    notes.push("hover for values; click a cell, or focus the map and use the arrow keys and Enter, to select it");
    note.textContent = notes.join("\n");
    root.dataset.mode = normalizedOn() ? "normalized" : "raw";
    placeBox(cursor, keyCell[0], keyCell[1], false);
    placeSelection();
    renderDetail();
    el.dataset.msReady = "1";
  }

  function placeBox(box: HTMLElement, r: number, c: number, show: boolean): void {
    box.style.left = `${c * cellW}px`;
    box.style.top = `${r * cellH}px`;
    box.style.width = `${cellW}px`;
    box.style.height = `${cellH}px`;
    if (show) box.style.display = "block";
  }

  function selectedCell(): [number, number] | null {
    const s = model.get("selected");
    if (!s || s.length !== 2 || s[0] < 0 || s[1] < 0 || s[0] >= R || s[1] >= C) return null;
    return [s[0], s[1]];
  }

  function placeSelection(): void {
    const s = selectedCell();
    if (!s) {
      selBox.style.display = "none";
      return;
    }
    placeBox(selBox, s[0], s[1], true);
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

  function renderDetail(): void {
    detail.replaceChildren();
    const s = selectedCell();
    const live = model.get("live");
    const offline = !!model.get("offline");
    if (!s) {
      detail.dataset.state = "empty";
      detail.append(h("div", "ms-pmap-dhead", "no cell selected"));
      detail.append(h("div", "ms-note", live
        ? "Click a cell (or focus the map, move with the arrow keys and press Enter) to re-run that one patch through the model and compare the top next tokens before and after."
        : "Click a cell (or arrow keys + Enter on the focused map) to select it and see its value."));
      return;
    }
    const [r, c] = s;
    detail.dataset.cell = `${r},${c}`;
    detail.append(h("div", "ms-pmap-dhead", cellName(r, c)));
    detail.append(h("div", "ms-pmap-facts", valueLines(r, c).join("\n") +
      `\nunpatched: corrupt ${num(model.get("corrupt_metric"))}, clean ${num(model.get("clean_metric"))}`));
    const d = model.get("detail");
    const matches = !!d && "kind" in d && Array.isArray(d.cell) && d.cell[0] === r && d.cell[1] === c;
    if (matches && d.kind === "rerun") {
      detail.dataset.state = "rerun";
      const what = d.approximation ? "exact re-run (the map is an attribution estimate)" : "re-run through the model";
      const norm = d.normalized !== null && d.normalized !== undefined ? `, normalised ${formatValue(d.normalized)}` : "";
      detail.append(h("div", "ms-pmap-facts ms-pmap-rerun", `${what}: ${num(d.value)}${norm}`));
      detail.append(h("div", "ms-pmap-caption", "top next tokens at the last position (logit · probability)"));
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

  function showTip(r: number, c: number, left: number, top: number): void {
    tooltip.textContent = [cellName(r, c), ...valueLines(r, c)].join("\n");
    tooltip.style.display = "block";
    const maxLeft = Math.max(0, root.clientWidth - tooltip.offsetWidth - 4);
    tooltip.style.left = `${Math.min(left + 14, maxLeft)}px`;
    tooltip.style.top = `${top + 14}px`;
    const hv = model.get("hovered");
    if (!hv || hv[0] !== r || hv[1] !== c) {
      model.set("hovered", [r, c]);
      model.save_changes();
    }
  }

  function cellAt(ev: MouseEvent): [number, number] | null {
    const rect = canvas.getBoundingClientRect();
    const c = Math.floor(((ev.clientX - rect.left) / rect.width) * C);
    const r = Math.floor(((ev.clientY - rect.top) / rect.height) * R);
    if (c < 0 || r < 0 || c >= C || r >= R) return null;
    return [r, c];
  }

  function choose(r: number, c: number): void {
    const cur = model.get("selected");
    if (cur && cur[0] === r && cur[1] === c) return;
    model.set("selected", [r, c]); // the change:selected listener redraws the selection
    model.save_changes();
  }

  canvas.addEventListener("mousemove", (ev) => {
    const hit = cellAt(ev);
    if (!hit) return;
    const rootRect = root.getBoundingClientRect();
    showTip(hit[0], hit[1], ev.clientX - rootRect.left, ev.clientY - rootRect.top);
  });
  canvas.addEventListener("mouseleave", () => {
    tooltip.style.display = "none";
  });
  canvas.addEventListener("click", (ev) => {
    const hit = cellAt(ev);
    if (!hit) return;
    keyCell = hit;
    placeBox(cursor, hit[0], hit[1], false);
    choose(hit[0], hit[1]);
  });
  canvas.addEventListener("blur", () => {
    tooltip.style.display = "none";
    cursor.style.display = "none";
  });
  canvas.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") {
      tooltip.style.display = "none";
      return;
    }
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      choose(keyCell[0], keyCell[1]);
      return;
    }
    const moves: Record<string, [number, number]> = {
      ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1],
      Home: [0, -C], End: [0, C], PageUp: [-R, 0], PageDown: [R, 0],
    };
    const d = moves[ev.key];
    if (!d) return;
    ev.preventDefault();
    keyCell = [Math.max(0, Math.min(R - 1, keyCell[0] + d[0])), Math.max(0, Math.min(C - 1, keyCell[1] + d[1]))];
    placeBox(cursor, keyCell[0], keyCell[1], true);
    const x0 = keyCell[1] * cellW;
    if (x0 < scroll.scrollLeft) scroll.scrollLeft = x0;
    else if (x0 + cellW > scroll.scrollLeft + scroll.clientWidth) scroll.scrollLeft = x0 + cellW - scroll.clientWidth;
    const cr = canvas.getBoundingClientRect();
    const rootRect = root.getBoundingClientRect();
    showTip(keyCell[0], keyCell[1], cr.left - rootRect.left + x0 + cellW / 2, cr.top - rootRect.top + keyCell[0] * cellH + cellH / 2);
  });
  select.addEventListener("change", () => {
    model.set("normalized", select.value === "normalized");
    model.save_changes(); // the change:normalized listener redraws
  });

  draw();
  const stopWaiting = redrawWhenAttached(el, draw);
  const names = ["effect", "clean_metric", "corrupt_metric", "metric_name", "row_labels", "col_labels", "col_clean",
    "col_corrupt", "columns", "column_kind", "positions_text", "clean_prompt", "corrupt_prompt", "title", "note",
    "normalized", "can_normalize"];
  const redraw = () => draw();
  const onSelected = () => {
    placeSelection();
    renderDetail();
  };
  const onDetail = () => renderDetail();
  for (const n of names) model.on(`change:${n}`, redraw);
  model.on("change:selected", onSelected);
  model.on("change:detail", onDetail);
  model.on("change:live", onDetail);
  return () => {
    stopWaiting();
    for (const n of names) model.off(`change:${n}`, redraw);
    model.off("change:selected", onSelected);
    model.off("change:detail", onDetail);
    model.off("change:live", onDetail);
  };
}

export default { render };
