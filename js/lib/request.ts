// One request / reply mechanism for the widgets that ask the kernel to compute something
// (SteeringPlayground's generations, PatchingMap's cell re-runs). A request is a message sent
// with model.send carrying a `kind` discriminator and an `id` (numbered per view); Python
// (src/mechscope/widgets/requests.py) answers in a reply trait that names the id it answers
// (`client_id`; None for a request made from Python), so a view shows only the reply to its
// newest request, or, when it awaits none of its own, whatever the kernel reports.
import type { AnyModel } from "./model";

export interface Request {
  kind: string;
  id: number;
}

/** Numbered requests from one view, and which reply is the one it waits for. */
export class Requests<R extends Request> {
  private nextId = 0;
  private sentAt = 0;
  private awaiting: number | null = null; // the id of this view's newest request (null: none)

  constructor(private readonly model: { send(msg: unknown): void }) {}

  /** Send `msg` with the next id; returns the id. */
  send(msg: Omit<R, "id">): number {
    this.nextId += 1;
    this.sentAt = Date.now();
    this.awaiting = this.nextId;
    this.model.send({ ...msg, id: this.nextId });
    return this.nextId;
  }

  /** The widget was moved elsewhere (from Python, or by another view): stop waiting for a
   * reply to this view's own request; the reply trait's value is the one to show. */
  forget(): void {
    this.awaiting = null;
  }

  /** Whether `reply` (a reply trait's value) is the one to show: its `field` names this view's
   * newest request, or this view awaits no reply of its own. */
  answers(reply: unknown, field: string): boolean {
    return this.awaiting === null || answers(reply, field, this.awaiting);
  }

  /** Milliseconds since the newest request was sent. */
  waited(): number {
    return Date.now() - this.sentAt;
  }
}

/** Whether two request keys (ids, cells) are the same. */
export function sameKey(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Whether `reply` (a reply trait's value) has `key` as its `field` ("cell", "client_id", ...). */
export function answers(reply: unknown, field: string, key: unknown): boolean {
  return !!reply && typeof reply === "object" && field in reply && sameKey((reply as Record<string, unknown>)[field], key);
}

/** Call `cb` whenever the reply trait `trait` changes; returns the function that stops it. */
export function replyFor<T extends Record<string, unknown>>(model: AnyModel<T>, trait: keyof T & string,
                                                            cb: () => void): () => void {
  model.on(`change:${trait}`, cb);
  return () => model.off(`change:${trait}`, cb);
}
