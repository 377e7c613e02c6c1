// One request / reply mechanism for the widgets that ask the kernel to compute something
// (SteeringPlayground's generations, PatchingMap's cell re-runs). A request carries a `kind`
// discriminator and an `id` (a message sent with model.send, or, for PatchingMap, the
// `selected` cell it sets); Python answers in a reply trait that names the request it answers
// (`id` / `client_id`, or the cell), so a view only shows the reply to its latest request.
// Python side: src/mechscope/widgets/requests.py.
import type { AnyModel } from "./model";

export interface Request {
  kind: string;
  id: number;
}

/** Numbered requests from one view; `waited()` says how long the newest has gone unanswered. */
export class Requests<R extends Request> {
  private nextId = 0;
  private sentAt = 0;

  constructor(private readonly model: { send(msg: unknown): void }) {}

  /** Send `msg` with the next id; returns the id. */
  send(msg: Omit<R, "id">): number {
    this.nextId += 1;
    this.sentAt = Date.now();
    this.model.send({ ...msg, id: this.nextId });
    return this.nextId;
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

/** Whether `reply` (a reply trait's value) answers the request whose key is `key`, the key
 * being the reply's `field` ("cell", "client_id", ...). */
export function answers(reply: unknown, field: string, key: unknown): boolean {
  return !!reply && typeof reply === "object" && field in reply && sameKey((reply as Record<string, unknown>)[field], key);
}

/** Call `cb` whenever the reply trait `trait` changes; returns the function that stops it. */
export function replyFor<T extends Record<string, unknown>>(model: AnyModel<T>, trait: keyof T & string,
                                                            cb: () => void): () => void {
  model.on(`change:${trait}`, cb);
  return () => model.off(`change:${trait}`, cb);
}
