// TokenText widget: several texts drawn token by token, each token's background coloured by its
// value in the chosen value row (one scale shared by all texts, a colour bar with its range);
// hover a token for its text, value, text index and position. Python side:
// src/mechscope/widgets/token_text.py (texts flattened with offsets: one binary values array).
import { decode, decodeFloat, decodeOptional, type EncodedArray, type NumericArray } from "../lib/codec";
import { formatValue } from "../lib/colors";
import { choiceSelect, h, ownKeys } from "../lib/dom";
import { Tooltip } from "../lib/grid";
import { onChange, viewWidget, type AnyModel } from "../lib/model";
import { autoScale, hoverTokens, paintToken, scaleBar, scalePaint, tokenCss, tokenSpan, type TokenScale } from "../lib/tokentext";
import { visibleToken } from "../lib/tokens";

type TTTraits = {
  token_ids: EncodedArray;
  offsets: EncodedArray;
  values: EncodedArray;
  scores: EncodedArray | Record<string, never>;
  vocab: string[];
  rows: string[];
  labels: string[];
  score_label: string;
  title: string;
  row: number;
};
type TTModel = AnyModel<TTTraits>;

const STYLE_ID = "mechscope-token-text-style-v1";
const BAR_W = 200;
const BAR_H = 10;
const DATA = ["token_ids", "offsets", "values", "scores", "vocab", "rows", "labels", "score_label", "title"] as const;
const CSS = `
.ms-tt { max-width: min(100%, 900px); }
.ms-tt .ms-tt-head { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center; margin-bottom: 6px; }
.ms-tt .ms-tt-bar { display: flex; align-items: center; gap: 4px; font-size: 10px; color: var(--jp-ui-font-color2, #555); }
.ms-tt .ms-tt-bar span { font-family: var(--jp-code-font-family, monospace); }
.ms-tt .ms-scalebar { display: block; border: 1px solid var(--jp-border-color2, #ddd); }
.ms-tt .ms-tt-readout { min-height: 16px; font-family: var(--jp-code-font-family, monospace); font-size: 11px;
  color: var(--jp-ui-font-color2, #555); white-space: pre; overflow: hidden; text-overflow: ellipsis; margin-bottom: 4px; }
.ms-tt .ms-tt-texts { max-height: 520px; overflow-y: auto; }
.ms-tt .ms-tt-text { margin: 2px 0 6px 0; line-height: 1.7; }
.ms-tt .ms-tt-label { display: inline-block; font-size: 10px; padding: 0 5px; border-radius: 8px; margin-right: 6px;
  background: var(--jp-layout-color2, #eee); white-space: pre; }
.ms-tt .ms-tt-score { font-family: var(--jp-code-font-family, monospace); font-size: 10px; margin-right: 6px;
  color: var(--jp-ui-font-color2, #555); }
.ms-tt .ms-tok { cursor: default; }
.ms-tt .ms-tt-texts:focus-visible { outline: 2px solid var(--jp-brand-color1, #1976d2); }
.ms-tt .ms-tok-cursor { outline: 2px solid var(--jp-brand-color1, #1976d2); outline-offset: -1px; }
${tokenCss(".ms-tt")}`;

class TokenTextView {
  readonly root = h("div", "ms-root ms-tt");
  private readonly title = h("div", "ms-title");
  private readonly menuBox = h("label");
  private readonly bar = h("div", "ms-tt-bar");
  private readonly readout = h("div", "ms-tt-readout");
  private readonly texts = h("div", "ms-tt-texts");
  private readonly tip = new Tooltip(this.root, false);
  private select: HTMLSelectElement | null = null;
  private ids: NumericArray = new Int32Array(0);
  private offsets: NumericArray = new Int32Array(0);
  private values: Float32Array = new Float32Array(0);
  private T = 0;
  private spans: HTMLElement[] = [];
  private cursor = -1; // flattened index of the keyboard cursor's token, -1 for none
  private shown: { span: HTMLElement; x: number; y: number } | null = null; // what the readout shows

  constructor(private readonly model: TTModel, el: HTMLElement) {
    const head = h("div", "ms-tt-head");
    head.append(this.menuBox, this.bar);
    this.readout.setAttribute("aria-live", "polite");
    this.root.append(this.title, head, this.readout, this.texts, this.tip.el);
    hoverTokens(this.texts, (span, ev) => this.show(span, ev.clientX, ev.clientY), () => this.tip.hide());
    this.texts.tabIndex = 0;
    this.texts.setAttribute("role", "group");
    this.texts.setAttribute("aria-label", "tokens: arrow keys move between tokens (up / down between texts)");
    this.texts.addEventListener("keydown", (ev) => this.onKey(ev));
    this.texts.addEventListener("blur", () => this.tip.hide());
    ownKeys(this.texts);
    el.replaceChildren(this.root);
  }

  private rowIndex(): number {
    const R = this.T ? this.values.length / this.T : this.model.get("rows").length;
    const r = this.model.get("row");
    return r >= 0 && r < R ? r : 0;
  }

  /** The menu of value rows (shown only when there are several). */
  private buildMenu(): void {
    const rows = this.model.get("rows");
    const { select } = choiceSelect("value row", rows.map((name, r) => [String(r), name] as const));
    select.addEventListener("change", () => {
      this.model.set("row", Number(select.value));
      this.model.save_changes();
    });
    this.select = select;
    this.menuBox.replaceChildren(document.createTextNode("values "), select);
    this.menuBox.style.display = rows.length > 1 ? "" : "none";
  }

  /** Every text: its label and score (if any), then one span per token. */
  private buildTexts(): void {
    const { model } = this;
    const vocab = model.get("vocab");
    const labels = model.get("labels");
    const scoresEnc = decodeOptional(model.get("scores"));
    const scores = scoresEnc ? Float32Array.from(scoresEnc) : null;
    const scoreLabel = model.get("score_label");
    const paint = { background: () => null };
    this.spans = [];
    const out: HTMLElement[] = [];
    for (let i = 0; i + 1 < this.offsets.length; i++) {
      const line = h("div", "ms-tt-text");
      line.dataset.text = String(i);
      if (labels.length) line.append(h("span", "ms-tt-label", labels[i] ?? ""));
      if (scores) line.append(h("span", "ms-tt-score", `${scoreLabel} ${formatValue(scores[i])}`));
      for (let k = this.offsets[i]; k < this.offsets[i + 1]; k++) {
        const span = tokenSpan(vocab[this.ids[k]] ?? "", NaN, paint);
        span.dataset.text = String(i);
        span.dataset.pos = String(k - this.offsets[i]);
        span.dataset.k = String(k);
        this.spans.push(span);
        line.append(span);
      }
      out.push(line);
    }
    this.texts.replaceChildren(...out);
  }

  /** Colour every token for the chosen row; the colour bar and its range follow. */
  paint(): void {
    const r = this.rowIndex();
    const vals = this.values.subarray(r * this.T, (r + 1) * this.T);
    const scale = autoScale(vals);
    const paint = scalePaint(scale);
    for (let k = 0; k < this.spans.length; k++) paintToken(this.spans[k], vals[k], paint);
    if (this.select) this.select.value = String(r);
    this.drawBar(scale);
    this.root.dataset.row = String(r);
    if (this.shown) this.show(this.shown.span, this.shown.x, this.shown.y, this.tip.el.style.display === "block"); // the readout follows the row
  }

  private drawBar(scale: TokenScale): void {
    const canvas = scaleBar(scale.table, BAR_W, BAR_H);
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `${scale.kind} colour scale from ${formatValue(scale.range.lo)} to ${formatValue(scale.range.hi)}`);
    canvas.dataset.kind = scale.kind;
    canvas.dataset.lo = String(scale.range.lo);
    canvas.dataset.hi = String(scale.range.hi);
    this.bar.replaceChildren(h("span", "ms-tt-lo", formatValue(scale.range.lo)), canvas,
      h("span", "ms-tt-hi", formatValue(scale.range.hi)), h("span", "ms-tt-kind", scale.kind));
  }

  /** The readout of token k in row r, as text pieces; the token and the row name each in its own
   * element (bidi-isolated by the shared CSS, so an unterminated override stays inside). */
  private describe(span: HTMLElement, r: number): [string, HTMLElement, string, HTMLElement, string] {
    const k = Number(span.dataset.k);
    const tok = visibleToken(this.model.get("vocab")[this.ids[k]] ?? "");
    return [`text ${span.dataset.text} · position ${span.dataset.pos} · "`, h("span", "ms-tt-tok", tok), "\"",
      h("span", "ms-tt-row", this.model.get("rows")[r] ?? "value"), ` = ${formatValue(this.values[r * this.T + k])}`];
  }

  /** The readout (and the tooltip at the client point x, y) for a token span. */
  private show(span: HTMLElement, x: number, y: number, tooltip = true): void {
    const r = this.rowIndex();
    const [where, tok, close, row, value] = this.describe(span, r);
    this.shown = { span, x, y };
    this.readout.replaceChildren(where, tok, `${close} · `, row, value);
    if (!tooltip) return;
    this.tip.show(`${where}${tok.textContent}${close}\n${row.textContent}${value}`, x, y);
    this.tip.el.replaceChildren(where, tok.cloneNode(true), `${close}\n`, row.cloneNode(true), value);
  }

  /** Arrow keys: left / right the previous / next token, up / down the same position in the
   * previous / next text (clamped to its length). */
  private onKey(ev: KeyboardEvent): void {
    const n = this.offsets.length - 1;
    if (!this.spans.length || !["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].includes(ev.key)) return;
    ev.preventDefault();
    let k = this.cursor;
    if (k < 0) k = 0;
    else if (ev.key === "ArrowRight") k = Math.min(this.spans.length - 1, k + 1);
    else if (ev.key === "ArrowLeft") k = Math.max(0, k - 1);
    else {
      let i = Number(this.spans[k].dataset.text) + (ev.key === "ArrowDown" ? 1 : -1);
      while (i >= 0 && i < n && this.offsets[i + 1] === this.offsets[i]) i += ev.key === "ArrowDown" ? 1 : -1;
      if (i >= 0 && i < n) k = Math.min(this.offsets[i + 1] - 1, this.offsets[i] + Number(this.spans[k].dataset.pos));
    }
    this.moveCursor(k);
  }

  private moveCursor(k: number): void {
    if (this.cursor >= 0) this.spans[this.cursor]?.classList.remove("ms-tok-cursor");
    this.cursor = k;
    const span = this.spans[k];
    span.classList.add("ms-tok-cursor");
    if (typeof span.scrollIntoView === "function") span.scrollIntoView({ block: "nearest", inline: "nearest" });
    const rect = span.getBoundingClientRect();
    this.show(span, rect.left, rect.bottom);
  }

  draw(): void {
    const { model } = this;
    this.title.textContent = model.get("title");
    this.ids = decode(model.get("token_ids")).values;
    this.offsets = decode(model.get("offsets")).values;
    const v = decodeFloat(model.get("values"));
    this.values = v.values;
    this.T = v.shape[1] ?? 0;
    this.buildMenu();
    this.buildTexts();
    this.cursor = -1;
    this.shown = null;
    this.readout.replaceChildren();
    this.paint();
  }
}

export default viewWidget<TTTraits, TokenTextView>([STYLE_ID, CSS], (model, el) => new TokenTextView(model, el), DATA,
  (model, view) => [onChange(model, ["row"], () => view.paint())]);
