// What a person has actually seen of the open conversation. `read` is a watermark ("read
// everything <= N", CONTRACT "Semantics" 5), so it may only move up to where every message
// after the current mark has been on screen: a row counts once at least half of it (or half
// the viewport, for a tall one) was visible while the tab was visible and focused. Opening a
// chat at the bottom or jumping past unread messages marks none of those skipped read.

const SETTLE_MS = 150; // one read frame per burst of scrolling, not one per row

export class ReadTracker {
  /**
   * @param {object} options
   * @param {HTMLElement} options.scroller  the scrolling box the rows are seen through
   * @param {() => {readSeq: number, maxSeq: number} | null} options.marks  the open conversation's marks, or null
   * @param {(seq: number) => void} options.onRead  the read watermark to send
   */
  constructor({ scroller, marks, onRead }) {
    Object.assign(this, { marks, onRead });
    this.visible = new Set(); // seqs of rows on screen now
    this.seen = new Set(); // seqs of rows that were on screen while someone could see them
    this.timer = null;
    this.observer = new IntersectionObserver((entries) => this.update(entries), {
      root: scroller, threshold: [0, 0.5, 1],
    });
    window.addEventListener("focus", () => this.check());
    document.addEventListener("visibilitychange", () => this.check());
  }

  /** Forget the previous conversation (its rows are gone with it). */
  reset() {
    this.observer.disconnect();
    this.visible.clear();
    this.seen.clear();
    clearTimeout(this.timer);
  }

  observe(node) {
    if (node.dataset.seq) this.observer.observe(node);
  }

  unobserve(node) {
    this.observer.unobserve(node);
    this.visible.delete(Number(node.dataset.seq));
  }

  update(entries) {
    for (const entry of entries) {
      const seq = Number(entry.target.dataset.seq);
      const enough = entry.intersectionRatio >= 0.5
        || (entry.rootBounds && entry.intersectionRect.height >= entry.rootBounds.height / 2);
      if (entry.isIntersecting && enough && entry.target.isConnected) this.visible.add(seq);
      else this.visible.delete(seq);
    }
    this.check();
  }

  /** Rows on screen count as seen only while a person can see them. */
  check() {
    if (document.visibilityState !== "visible" || !document.hasFocus()) return;
    for (const seq of this.visible) this.seen.add(seq);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), SETTLE_MS);
  }

  /** The highest seq with every message from the current mark up to it seen. */
  flush() {
    const marks = this.marks();
    if (!marks) return;
    let seq = marks.readSeq;
    while (seq < marks.maxSeq && this.seen.has(seq + 1)) seq += 1;
    if (seq > marks.readSeq) this.onRead(seq);
  }
}
