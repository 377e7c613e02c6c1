// Small DOM helpers. Every piece of user or model text goes through textContent, never innerHTML.

import { visibleToken } from "./tokens";

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * Keys pressed on these elements are theirs, not JupyterLab's notebook shortcuts (arrows would
 * move the cell selection, "0 0" restart the kernel, Shift+Enter run the cell): Lumino skips a
 * focused element carrying `data-lm-suppress-shortcuts`. The one way every widget keeps its keys.
 */
export function ownKeys(...nodes: HTMLElement[]): void {
  for (const node of nodes) node.setAttribute("data-lm-suppress-shortcuts", "true");
}

/** A labelled <select> of [value, text] options; its keys (arrows, type-ahead) are its own. */
export function choiceSelect(
  ariaLabel: string,
  options: ReadonlyArray<readonly [string, string]>,
): { select: HTMLSelectElement; options: Record<string, HTMLOptionElement> } {
  const select = h("select");
  select.setAttribute("aria-label", ariaLabel);
  const byValue: Record<string, HTMLOptionElement> = {};
  for (const [value, text] of options) {
    const opt = h("option", undefined, text);
    opt.value = value;
    byValue[value] = opt;
    select.append(opt);
  }
  ownKeys(select);
  return { select, options: byValue };
}

/**
 * A <style> element with `css`, added once per document under `id` (after the shared CSS).
 */
export function ensureWidgetStyle(id: string, css: string): void {
  ensureStyle();
  if (document.getElementById(id)) return;
  const style = document.createElement("style");
  style.id = id;
  style.textContent = css;
  document.head.appendChild(style);
}

/**
 * Call `redraw` once `el` is laid out in the document, when it is not yet. Canvas drawing reads
 * the theme's colours and fonts through getComputedStyle, which only gives fallbacks for a
 * detached element, and JupyterLab may call a widget's render() before attaching its view: the
 * first drawing would keep the fallback ink. Returns a function that stops waiting.
 */
export function redrawWhenAttached(el: HTMLElement, redraw: () => void): () => void {
  if (el.isConnected && el.getClientRects().length) return () => {};
  const obs = new ResizeObserver(() => {
    if (!el.isConnected || !el.getClientRects().length) return;
    obs.disconnect();
    redraw();
  });
  obs.observe(el);
  return () => obs.disconnect();
}

/**
 * Fill `box` with one label per grid column, `cellW` px wide (written vertically under 44 px,
 * left out under 10 px): each label's text made visible (visibleToken), `title(i)` on hover.
 */
export function fillColumnLabels(box: HTMLElement, labels: readonly string[], cellW: number,
                                 title: (i: number) => string): void {
  box.replaceChildren();
  box.classList.toggle("ms-vertical", cellW < 44);
  if (cellW < 10) return;
  labels.forEach((label, i) => {
    const d = h("div", undefined, visibleToken(label ?? ""));
    d.style.width = `${cellW}px`;
    d.title = title(i);
    box.append(d);
  });
}

const STYLE_ID = "mechscope-style-v1";

/** Shared CSS, added once per document; follows JupyterLab's light/dark theme variables. */
export function ensureStyle(): void {
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = `
.ms-root { font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 12px;
  color: var(--jp-ui-font-color1, #1f1f1f); background: var(--jp-layout-color0, transparent);
  position: relative; display: inline-block; max-width: 100%; }
.ms-title { font-weight: 600; margin: 2px 0 6px 0; }
.ms-grid { display: grid; grid-template-columns: auto auto auto; align-items: start; gap: 4px; }
.ms-scroll { overflow: auto; max-width: min(100%, 1100px); }
.ms-rowlabels, .ms-collabels { font-family: var(--jp-code-font-family, monospace); font-size: 11px;
  color: var(--jp-ui-font-color2, #555); }
.ms-rowlabels div { text-align: right; padding-right: 4px; overflow: hidden; white-space: nowrap; }
.ms-collabels { display: flex; }
.ms-collabels div { writing-mode: vertical-rl; transform: rotate(180deg); white-space: pre;
  overflow: hidden; text-align: left; max-height: 90px; }
.ms-canvas { display: block; image-rendering: pixelated; cursor: crosshair; outline: none; }
.ms-canvas:focus-visible { outline: 2px solid var(--jp-brand-color1, #1976d2); }
.ms-colorbar { display: flex; flex-direction: column; align-items: flex-start; gap: 2px;
  font-size: 10px; color: var(--jp-ui-font-color2, #555); }
.ms-tooltip { position: absolute; pointer-events: none; z-index: 10; white-space: pre;
  background: var(--jp-layout-color2, #f3f3f3); color: var(--jp-ui-font-color0, #000);
  border: 1px solid var(--jp-border-color1, #bbb); border-radius: 3px; padding: 3px 6px;
  font-family: var(--jp-code-font-family, monospace); font-size: 11px; display: none; }
.ms-note { font-size: 11px; color: var(--jp-ui-font-color2, #666); margin-top: 4px; }
/* a token's bidi controls (an unterminated U+202E...) stay inside its own element */
.ms-root *:not(textarea):not(input) { unicode-bidi: isolate; }
`;
  document.head.appendChild(style);
}
