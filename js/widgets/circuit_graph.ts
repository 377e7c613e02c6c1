// CircuitGraph widget: a circuit (heads, MLPs) or an attribution graph (transcoder features) as a
// layered graph on canvas: rows are layers (input at the bottom), columns token positions or head
// indices; edges width and colour by signed weight (diverging scale), drawn in one pass per colour.
// Hover a node for its summary (textContent only); click it for the metric change when it is
// ablated: live, {kind: "ablate", id, nodes} goes to the kernel (answered in `answer`); offline,
// the precomputed `node_effect` answers. Shift-click / drag selects; "group" makes a supernode of
// the selection (one box; live: ablated together; offline: the sum of single effects, labelled as
// such). A slider hides edges below a |weight|. Arrow keys move between nodes, Enter clicks.
// Python side: src/mechscope/widgets/circuit_graph.py.
import { decode, decodeFloat, type EncodedArray, type NumericArray } from "../lib/codec";
import { colorTable, formatValue, valueRange } from "../lib/colors";
import { h, ownKeys } from "../lib/dom";
import {
  boxOf, drawEdges, fitText, GRAPH_PAD, Incidence, layoutGraph, type EdgeStyle, type GraphLayout,
} from "../lib/graph";
import { sizeCanvas, Tooltip } from "../lib/grid";
import { onChange, viewWidget, type AnyModel } from "../lib/model";
import { Requests } from "../lib/request";
import { categoryColor, eventPoint, nearestInDirection, PointGrid, SCATTER_ARROWS, textColor } from "../lib/scatter";
import { scaleBar } from "../lib/tokentext";
import { visibleToken } from "../lib/tokens";

interface Answer {
  seq?: number;
  client_id?: number | null;
  nodes?: number[];
  state?: "running" | "done" | "error";
  value?: number | null;
  message?: string;
}

type CGTraits = {
  node_layer: EncodedArray;
  node_column: EncodedArray;
  node_kind: EncodedArray;
  node_effect: EncodedArray;
  edge_src: EncodedArray;
  edge_dst: EncodedArray;
  edge_weight: EncodedArray;
  node_ids: string[];
  node_labels: string[];
  node_summaries: string[];
  kinds: string[];
  row_labels: string[];
  column_labels: string[];
  title: string;
  metric_name: string;
  min_weight: number;
  selected: number[];
  groups: number[][];
  live: boolean;
  answer: Answer;
};
type CGModel = AnyModel<CGTraits>;
interface AblateMsg { kind: "ablate"; id: number; nodes: number[] }

const STYLE_ID = "mechscope-circuit-graph-style-v1";
const DATA = ["node_layer", "node_column", "node_kind", "node_effect", "edge_src", "edge_dst", "edge_weight",
  "node_labels", "node_summaries", "kinds", "row_labels", "column_labels", "title", "metric_name"] as const;
const SLIDER_STEPS = 200;
const TIP_CHARS = 600;
const CSS = `
.ms-cg { max-width: min(100%, 1120px); }
.ms-cg .ms-cg-plot { position: relative; display: inline-block; }
.ms-cg canvas { display: block; }
.ms-cg .ms-cg-canvas { cursor: pointer; outline: none; user-select: none; }
.ms-cg .ms-cg-canvas:focus-visible { outline: 2px solid var(--jp-brand-color1, #1976d2); }
.ms-cg .ms-cg-overlay { position: absolute; left: 0; top: 0; pointer-events: none; }
.ms-cg .ms-cg-band { position: absolute; display: none; pointer-events: none;
  border: 1px dashed var(--jp-ui-font-color1, #333); background: rgba(25,118,210,0.08); }
.ms-cg .ms-cg-row { display: flex; align-items: center; gap: 8px; margin: 4px 0; flex-wrap: wrap; font-size: 11px; }
.ms-cg .ms-legend { display: flex; flex-wrap: wrap; gap: 4px 12px; }
.ms-cg .ms-dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 4px; vertical-align: -1px; }
.ms-cg input[type=range] { width: 220px; accent-color: var(--jp-brand-color1, #1976d2); }
.ms-cg button { font: inherit; font-size: 11px; color: var(--jp-ui-font-color1, #1f1f1f); background: var(--jp-layout-color2, #eee);
  border: 1px solid var(--jp-border-color1, #bbb); border-radius: 2px; padding: 2px 8px; cursor: pointer; }
.ms-cg button:disabled { opacity: 0.5; cursor: default; }
.ms-cg .ms-cg-detail { font-size: 12px; min-height: 1.4em; white-space: pre-wrap; overflow-wrap: anywhere; margin: 4px 0; }
.ms-cg[data-state=error] .ms-cg-detail { color: var(--jp-error-color1, #d32f2f); }
.ms-cg .ms-cg-groups { display: flex; flex-direction: column; gap: 2px; font-size: 11px; }
.ms-cg .ms-cg-group { cursor: pointer; white-space: pre-wrap; overflow-wrap: anywhere; }
.ms-cg .ms-cg-tip { white-space: pre-wrap; max-width: 460px; }
.ms-cg .ms-scalebar { display: inline-block; border: 1px solid var(--jp-border-color2, #ddd); vertical-align: middle; }
`;

/** The view's arrays, decoded once per data change. */
interface Arrays {
  layer: NumericArray;
  column: Float32Array;
  kind: NumericArray;
  effect: Float32Array;
  src: NumericArray;
  dst: NumericArray;
  weight: Float32Array;
}

function dotted(colour: string, text: string): HTMLElement {
  const dot = h("span", "ms-dot");
  dot.style.background = colour;
  const out = h("span");
  out.append(dot, h("span", "ms-cg-kind", text));
  return out;
}

const keyOf = (nodes: readonly number[]): string => [...nodes].sort((a, b) => a - b).join(",");

class CircuitGraphView {
  readonly root = h("div", "ms-root ms-cg");
  private readonly titleEl = h("div", "ms-title");
  private readonly canvas = h("canvas", "ms-cg-canvas");
  private readonly overlay = h("canvas", "ms-cg-overlay");
  private readonly band = h("div", "ms-cg-band");
  private readonly legend = h("div", "ms-legend");
  private readonly slider = h("input", "ms-cg-slider");
  private readonly sliderOut = h("output", "ms-cg-threshold");
  private readonly edgeCount = h("span", "ms-cg-edges");
  private readonly groupBtn = h("button", "ms-cg-group-btn", "group selection");
  private readonly clearBtn = h("button", "ms-cg-clear-btn", "clear groups");
  private readonly detail = h("div", "ms-cg-detail");
  private readonly groupList = h("div", "ms-cg-groups");
  private readonly note = h("div", "ms-note ms-cg-note");
  private readonly tip = new Tooltip(this.root, false);
  private readonly requests: Requests<AblateMsg>;
  private a: Arrays | null = null;
  private L: GraphLayout | null = null;
  private grid = new PointGrid(new Float32Array(0), new Float32Array(0), 1, 1);
  private inc = new Incidence(0, [], []);
  private style: EdgeStyle = { table: colorTable("diverging"), range: { lo: -1, hi: 1 }, maxAbs: 1 };
  private hovered = -1;
  private cursor = -1;
  private target: number[] = []; // the nodes whose effect the detail line shows
  private liveCache = new Map<string, number | null>();
  private drag: { x: number; y: number; moved: boolean; shift: boolean } | null = null;
  private readonly up = (ev: MouseEvent) => this.onUp(ev);

  constructor(private readonly model: CGModel, el: HTMLElement) {
    this.requests = new Requests<AblateMsg>(model);
    const plot = h("div", "ms-cg-plot");
    plot.append(this.canvas, this.overlay, this.band);
    this.canvas.tabIndex = 0;
    this.canvas.setAttribute("role", "img");
    this.tip.el.classList.add("ms-cg-tip");
    this.detail.setAttribute("role", "status");
    this.detail.setAttribute("aria-live", "polite");
    this.root.append(this.titleEl, this.legend, plot, this.controls(), this.detail, this.groupList, this.note, this.tip.el);
    ownKeys(this.canvas, this.slider, this.groupBtn, this.clearBtn);
    this.listen();
    el.replaceChildren(this.root);
  }

  private controls(): HTMLElement {
    const row = h("div", "ms-cg-row");
    this.slider.type = "range";
    this.slider.min = "0";
    this.slider.max = String(SLIDER_STEPS);
    this.slider.step = "1";
    this.slider.setAttribute("aria-label", "hide edges with |weight| below");
    this.groupBtn.type = "button";
    this.clearBtn.type = "button";
    row.append(h("span", undefined, "min |weight|"), this.slider, this.sliderOut, this.edgeCount, this.groupBtn, this.clearBtn);
    return row;
  }

  private listen(): void {
    const c = this.canvas;
    c.addEventListener("mousemove", (ev) => this.onMove(ev));
    c.addEventListener("mousedown", (ev) => {
      const [x, y] = eventPoint(c, ev);
      this.drag = { x, y, moved: false, shift: ev.shiftKey };
      ev.preventDefault();
      c.focus({ preventScroll: true });
    });
    window.addEventListener("mouseup", this.up);
    c.addEventListener("mouseleave", () => {
      if (!this.drag) this.hover(-1);
    });
    c.addEventListener("keydown", (ev) => this.onKey(ev));
    c.addEventListener("blur", () => this.tip.hide());
    this.slider.addEventListener("input", () => {
      this.model.set("min_weight", (this.slider.valueAsNumber / SLIDER_STEPS) * this.style.maxAbs);
      this.model.save_changes(); // the change redraws the edges (drawBase)
    });
    this.groupBtn.addEventListener("click", () => this.makeGroup());
    this.clearBtn.addEventListener("click", () => {
      this.model.set("groups", []);
      this.model.save_changes();
      this.redrawSelection();
    });
  }

  private live(): boolean {
    return !!this.model.get("live");
  }

  private label(i: number): string {
    return visibleToken(this.model.get("node_labels")[i] ?? String(i));
  }

  /** "kind · row · column" of node i. */
  private place(i: number): string {
    const a = this.a!;
    const kind = this.model.get("kinds")[a.kind[i]] ?? "?";
    const row = visibleToken(this.model.get("row_labels")[a.layer[i]] ?? `L${a.layer[i]}`);
    const col = Number.isInteger(a.column[i]) ? this.model.get("column_labels")[a.column[i]] : undefined;
    return `${kind} · ${row}${col !== undefined ? ` · ${visibleToken(col)}` : ""}`;
  }

  private effectText(i: number): string {
    const v = this.a!.effect[i];
    return Number.isFinite(v) ? `${this.model.get("metric_name")} change if ablated: ${formatValue(v)}` : "no precomputed effect";
  }

  private hover(i: number, x = 0, y = 0): void {
    this.hovered = i;
    this.canvas.dataset.hover = String(i);
    this.drawOverlay();
    if (i < 0) return this.tip.hide();
    const summary = this.model.get("node_summaries")[i] ?? "";
    const shown = summary.length > TIP_CHARS ? `${summary.slice(0, TIP_CHARS)}…` : summary;
    this.tip.show(`${this.label(i)} (${this.place(i)})\n${this.effectText(i)}${shown ? `\n${shown}` : ""}`, x, y);
  }

  private onMove(ev: MouseEvent): void {
    const [x, y] = eventPoint(this.canvas, ev);
    if (this.drag) {
      this.drag.moved ||= Math.abs(x - this.drag.x) + Math.abs(y - this.drag.y) > 4;
      if (this.drag.moved) {
        const d = this.drag;
        Object.assign(this.band.style, { display: "block", left: `${Math.min(x, d.x)}px`, top: `${Math.min(y, d.y)}px`,
          width: `${Math.abs(x - d.x)}px`, height: `${Math.abs(y - d.y)}px` });
        this.tip.hide();
        return;
      }
    }
    const i = this.nodeAt(x, y);
    if (i !== this.hovered || i >= 0) this.hover(i, ev.clientX, ev.clientY);
  }

  private nodeAt(x: number, y: number): number {
    return this.grid.nearest(x, y, (this.L?.radius ?? 4) + 3);
  }

  /** The group whose box holds (x, y), or -1. */
  private groupAt(x: number, y: number): number {
    const groups = this.model.get("groups") ?? [];
    for (let g = groups.length - 1; g >= 0; g--) {
      const [bx, by, bw, bh] = boxOf(this.L!, groups[g], this.L!.radius + 4);
      if (x >= bx && x <= bx + bw && y >= by && y <= by + bh) return g;
    }
    return -1;
  }

  /** End of a press: a drag selects the nodes in its rectangle (shift adds); a click on a node
   * selects it and shows its effect (shift: toggles it in the selection); on a supernode's box,
   * the group's effect; elsewhere clears the selection. */
  private onUp(ev: MouseEvent): void {
    const d = this.drag;
    if (!d || !this.L) return;
    this.drag = null;
    this.band.style.display = "none";
    const [x, y] = eventPoint(this.canvas, ev);
    const old = this.model.get("selected") ?? [];
    if (d.moved) {
      const inside = this.grid.inRect(d.x, d.y, x, y);
      return this.select(d.shift ? [...old, ...inside.filter((i) => !old.includes(i))] : inside);
    }
    const i = this.nodeAt(d.x, d.y);
    if (i >= 0) this.cursor = i;
    if (d.shift) {
      if (i >= 0) this.select(old.includes(i) ? old.filter((j) => j !== i) : [...old, i]);
      return;
    }
    if (i >= 0) return this.activate([i]);
    const g = this.groupAt(d.x, d.y);
    if (g >= 0) return this.activate(this.model.get("groups")[g]);
    this.select([]);
  }

  private select(sel: number[]): void {
    this.model.set("selected", sel);
    this.model.save_changes();
    this.redrawSelection();
  }

  /** Show the effect of ablating `nodes` together: live from the kernel (cached per set),
   * offline from the precomputed single-node effects. */
  activate(nodes: number[]): void {
    this.target = [...nodes].sort((a, b) => a - b);
    if (nodes.length === 1) this.select(nodes);
    const key = keyOf(nodes);
    if (this.live() && !this.liveCache.has(key)) {
      this.requests.send({ kind: "ablate", nodes: this.target });
      this.root.dataset.state = "running";
    }
    this.showDetail();
  }

  private makeGroup(): void {
    const sel = [...(this.model.get("selected") ?? [])].sort((a, b) => a - b);
    if (sel.length < 2) return;
    const groups = (this.model.get("groups") ?? []).map((g) => g.filter((i) => !sel.includes(i))).filter((g) => g.length > 1);
    this.model.set("groups", [...groups, sel]);
    this.model.save_changes();
    this.activate(sel);
    this.redrawSelection();
  }

  /** The detail line: what ablating the target nodes does. */
  private showDetail(): void {
    const nodes = this.target;
    const metric = this.model.get("metric_name");
    this.root.dataset.target = nodes.join(",");
    if (!nodes.length || !this.a) {
      this.detail.textContent = this.live() ? "click a node to ablate it in the kernel" : "click a node for its precomputed ablation effect";
      this.root.dataset.state = "idle";
      return;
    }
    const names = nodes.length === 1 ? this.label(nodes[0]) : `supernode of ${nodes.length} nodes`;
    if (this.live()) return this.showLive(names, metric);
    if (nodes.length === 1) {
      const v = this.a.effect[nodes[0]];
      this.root.dataset.state = "done";
      this.root.dataset.value = Number.isFinite(v) ? String(v) : "";
      this.detail.textContent = Number.isFinite(v)
        ? `ablating ${names}: ${metric} changes by ${formatValue(v)} (precomputed)`
        : `ablating ${names}: no precomputed effect (live ablation needs a kernel)`;
      return;
    }
    const known = nodes.filter((i) => Number.isFinite(this.a!.effect[i]));
    const sum = known.reduce((s, i) => s + this.a!.effect[i], 0);
    this.root.dataset.state = "sum";
    this.root.dataset.value = String(sum);
    this.detail.textContent = `${names}: group effects need a kernel. Sum of the single-node effects: ` +
      `${formatValue(sum)} (${known.length} of ${nodes.length} nodes have one; a sum, not the group's ${metric} change)`;
  }

  private showLive(names: string, metric: string): void {
    const key = keyOf(this.target);
    if (this.liveCache.has(key)) {
      const v = this.liveCache.get(key);
      this.root.dataset.state = "done";
      this.root.dataset.value = v === null || v === undefined ? "" : String(v);
      this.detail.textContent = `ablating ${names}: ${metric} changes by ${v === null || v === undefined ? "NaN" : formatValue(v)} (live)`;
      return;
    }
    const ans = this.model.get("answer") ?? {};
    const mine = this.requests.answers(ans, "client_id") && keyOf(ans.nodes ?? []) === key;
    if (mine && ans.state === "error") {
      this.root.dataset.state = "error";
      this.detail.textContent = `ablating ${names} failed: ${ans.message ?? ""}`;
      return;
    }
    this.root.dataset.state = "running";
    this.detail.textContent = `ablating ${names} in the kernel…`;
  }

  /** A new `answer` from the kernel: cache a finished one, show it if it is the target's. */
  onAnswer(): void {
    const ans = this.model.get("answer") ?? {};
    if (ans.state === "done" && ans.nodes) this.liveCache.set(keyOf(ans.nodes), ans.value ?? null);
    this.showDetail();
    this.drawGroups();
  }

  /** Arrow keys: to the nearest node that way (rows up and down, columns left and right);
   * Enter: click it; Escape: clear the selection. */
  private onKey(ev: KeyboardEvent): void {
    if (!this.L || !this.a) return;
    if (ev.key === "Enter" && this.cursor >= 0) {
      ev.preventDefault();
      return this.activate([this.cursor]);
    }
    if (ev.key === "Escape") return this.select([]);
    const dir = SCATTER_ARROWS[ev.key];
    if (!dir) return;
    ev.preventDefault();
    let i = this.cursor;
    if (i < 0) i = (this.model.get("selected") ?? [])[0] ?? 0;
    else {
      const j = nearestInDirection(this.L.px, this.L.py, i, dir[0], dir[1]);
      if (j >= 0) i = j;
    }
    this.cursor = i;
    const r = this.canvas.getBoundingClientRect();
    this.hover(i, r.left + this.L.px[i], r.top + this.L.py[i]);
  }

  /** The visible edges (|weight| >= min_weight), weakest first. */
  private visibleEdges(): Int32Array {
    const a = this.a!;
    const t = this.model.get("min_weight") ?? 0;
    const out: number[] = [];
    for (let e = 0; e < a.weight.length; e++) if (Math.abs(a.weight[e]) >= t) out.push(e);
    return Int32Array.from(out);
  }

  drawBase(): void {
    const L = this.L!;
    const a = this.a!;
    const W = L.left + L.width + GRAPH_PAD.right;
    const H = L.top + L.height + GRAPH_PAD.bottom;
    const ctx = sizeCanvas(this.canvas, W, H);
    const fg = textColor(this.root);
    this.drawAxes(ctx, fg);
    const shown = this.visibleEdges();
    drawEdges(ctx, L, a.src, a.dst, a.weight, shown, this.style);
    for (let i = 0; i < a.layer.length; i++) {
      ctx.beginPath();
      ctx.arc(L.px[i], L.py[i], L.radius, 0, Math.PI * 2);
      ctx.fillStyle = categoryColor(a.kind[i]);
      ctx.fill();
    }
    const t = this.model.get("min_weight") ?? 0;
    this.root.dataset.visibleEdges = String(shown.length);
    this.sliderOut.textContent = formatValue(t);
    this.slider.value = String(Math.round((t / (this.style.maxAbs || 1)) * SLIDER_STEPS));
    this.edgeCount.textContent = `${shown.length} of ${a.weight.length} edges shown`;
    sizeCanvas(this.overlay, W, H);
    this.drawOverlay();
  }

  /** Row labels at the left, column labels below (rotated when columns are narrow), a faint line per row. */
  private drawAxes(ctx: CanvasRenderingContext2D, fg: string): void {
    const L = this.L!;
    const rows = this.model.get("row_labels");
    const cols = this.model.get("column_labels");
    ctx.save();
    ctx.fillStyle = fg;
    ctx.strokeStyle = fg;
    ctx.font = `${Math.min(11, L.rowH - 4)}px sans-serif`;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const every = Math.ceil(12 / L.rowH);
    rows.forEach((r, k) => {
      const y = L.top + (rows.length - 1 - k + 0.5) * L.rowH;
      ctx.globalAlpha = 0.12;
      ctx.beginPath();
      ctx.moveTo(L.left, y);
      ctx.lineTo(L.left + L.width, y);
      ctx.stroke();
      ctx.globalAlpha = 1;
      if (k % every === 0) ctx.fillText(fitText(ctx, visibleToken(r), L.left - 10), L.left - 6, y);
    });
    ctx.font = "10px sans-serif";
    for (let c = Math.ceil(L.cmin); c <= Math.floor(L.cmax) && c < cols.length; c++) {
      const x = L.left + (c - L.cmin + 0.5) * L.cellW;
      const text = fitText(ctx, visibleToken(cols[c] ?? ""), L.cellW < 56 ? GRAPH_PAD.bottom * 1.3 : L.cellW - 6);
      ctx.save();
      ctx.translate(x, L.top + L.height + 6);
      if (L.cellW < 56) ctx.rotate(-Math.PI / 4);
      ctx.textAlign = L.cellW < 56 ? "right" : "center";
      ctx.textBaseline = "top";
      ctx.fillText(text, 0, 0);
      ctx.restore();
    }
    ctx.restore();
  }

  /** Over the base drawing: supernode boxes, selected nodes ringed, and the hovered / keyboard
   * node's visible edges highlighted. */
  private drawOverlay(): void {
    const L = this.L;
    const a = this.a;
    if (!L || !a) return;
    const ctx = this.overlay.getContext("2d")!;
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.overlay.width, this.overlay.height);
    ctx.restore();
    const fg = textColor(this.root);
    const focus = this.hovered >= 0 ? this.hovered : this.cursor;
    if (focus >= 0) {
      const t = this.model.get("min_weight") ?? 0;
      const mine = Array.from(this.inc.of(focus)).filter((e) => Math.abs(a.weight[e]) >= t);
      drawEdges(ctx, L, a.src, a.dst, a.weight, mine, this.style, 1.5);
    }
    this.drawGroupBoxes(ctx, fg);
    ctx.strokeStyle = fg;
    ctx.lineWidth = 1.5;
    for (const i of [...(this.model.get("selected") ?? []), focus]) {
      if (i < 0 || i >= a.layer.length) continue;
      ctx.beginPath();
      ctx.arc(L.px[i], L.py[i], L.radius + 2.5, 0, Math.PI * 2);
      ctx.stroke();
    }
  }

  private drawGroupBoxes(ctx: CanvasRenderingContext2D, fg: string): void {
    const L = this.L!;
    (this.model.get("groups") ?? []).forEach((g, k) => {
      const [x, y, w, hh] = boxOf(L, g, L.radius + 4);
      ctx.save();
      ctx.fillStyle = "rgba(120,120,120,0.12)";
      ctx.fillRect(x, y, w, hh);
      ctx.strokeStyle = fg;
      ctx.setLineDash([4, 3]);
      ctx.lineWidth = 1.5;
      ctx.strokeRect(x, y, w, hh);
      ctx.fillStyle = fg;
      ctx.font = "bold 10px sans-serif";
      ctx.textBaseline = "bottom";
      ctx.fillText(`G${k + 1}`, x + 2, y - 1);
      ctx.restore();
    });
  }

  /** The supernode list: one line per group (click: its effect). */
  private drawGroups(): void {
    const groups = this.model.get("groups") ?? [];
    this.groupList.replaceChildren(...groups.map((g, k) => {
      const names = g.slice(0, 6).map((i) => this.label(i)).join(" + ") + (g.length > 6 ? ` + ${g.length - 6} more` : "");
      const cached = this.liveCache.get(keyOf(g));
      const value = this.live() && cached !== undefined ? ` · ${formatValue(cached ?? NaN)} (live)` : "";
      const line = h("div", "ms-cg-group", `G${k + 1}: ${names}${value}`);
      line.dataset.group = String(k);
      line.addEventListener("click", () => this.activate(g));
      return line;
    }));
    this.clearBtn.disabled = !groups.length;
  }

  redrawSelection(): void {
    const sel = this.model.get("selected") ?? [];
    this.root.dataset.selected = sel.join(",");
    this.root.dataset.groups = (this.model.get("groups") ?? []).map((g) => g.join(",")).join(";");
    this.groupBtn.disabled = sel.length < 2;
    this.drawOverlay();
    this.drawGroups();
  }

  private decodeAll(): void {
    const m = this.model;
    this.a = {
      layer: decode(m.get("node_layer")).values, column: decodeFloat(m.get("node_column")).values,
      kind: decode(m.get("node_kind")).values, effect: decodeFloat(m.get("node_effect")).values,
      src: decode(m.get("edge_src")).values, dst: decode(m.get("edge_dst")).values,
      weight: decodeFloat(m.get("edge_weight")).values,
    };
  }

  draw(): void {
    const m = this.model;
    this.decodeAll();
    const a = this.a!;
    this.titleEl.textContent = m.get("title");
    this.L = layoutGraph(a.layer, a.column, m.get("row_labels").length);
    const L = this.L;
    this.grid = new PointGrid(L.px, L.py, L.left + L.width + GRAPH_PAD.right, L.top + L.height + GRAPH_PAD.bottom);
    this.inc = new Incidence(a.layer.length, a.src, a.dst);
    const range = valueRange(a.weight, "diverging");
    this.style = { table: colorTable("diverging"), range, maxAbs: range.hi };
    this.canvas.dataset.positions = JSON.stringify(Array.from(L.px, (x, i) => [Math.round(x * 10) / 10, Math.round(L.py[i] * 10) / 10]));
    this.canvas.setAttribute("aria-label", `layered graph of ${a.layer.length} nodes and ${a.weight.length} edges; ` +
      "arrow keys move between nodes, Enter ablates the node");
    const kinds = m.get("kinds");
    const present = kinds.map((_, k) => k).filter((k) => a.kind.includes(k));
    this.legend.replaceChildren(...present.map((k) => dotted(categoryColor(k), kinds[k])), h("span", "ms-cg-lo", formatValue(range.lo)),
      scaleBar(this.style.table, 120, 10), h("span", "ms-cg-hi", `${formatValue(range.hi)} edge weight`));
    this.note.textContent = this.live()
      ? "live: a click ablates the node in the kernel; shift-click or drag to select, then group to ablate together"
      : "offline: clicks show the precomputed single-node effects; group effects need a kernel";
    this.drawBase();
    this.redrawSelection();
    this.showDetail();
  }

  dispose(): void {
    window.removeEventListener("mouseup", this.up);
  }
}

export default viewWidget<CGTraits, CircuitGraphView>([STYLE_ID, CSS], (model, el) => new CircuitGraphView(model, el), DATA,
  (model, view) => [
    onChange(model, ["selected", "groups"], () => view.redrawSelection()),
    onChange(model, ["answer"], () => view.onAnswer()),
    onChange(model, ["min_weight"], () => view.drawBase()),
    onChange(model, ["live"], () => view.draw()),
    () => view.dispose(),
  ]);
