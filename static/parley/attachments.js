// Files in messages (CONTRACT v1.1, "Attachments"): the composer's tray (attach by button,
// drag and drop or paste; each file uploads at once with its progress shown), images in
// messages as thumbnails that open in a lightbox, other files as download chips.
// File names are user content: they only ever go in as text (ui.el).
import { el } from "./ui.js";

const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

/** "1.4 MB" */
export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB"];
  let size = bytes / 1024;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) { size /= 1024; unit += 1; }
  return `${size < 10 ? size.toFixed(1) : Math.round(size)} ${units[unit]}`;
}

const isImage = (attachment) => Boolean(attachment.thumbnail_url);

/**
 * A message's files: images as thumbnails (a button that opens the lightbox), everything
 * else as a chip that downloads. Controls start out of the Tab order: the message list's
 * roving focus lets Tab reach them inside the current message only (roving.js).
 */
export function renderAttachments(attachments, { onOpen }) {
  const list = el("ul", { cls: "attachments", attrs: { "aria-label": "Files" } });
  for (const attachment of attachments) {
    if (isImage(attachment)) {
      const img = el("img", { attrs: { src: attachment.thumbnail_url, alt: attachment.name, loading: "lazy",
                                       ...thumbnailBox(attachment) } });
      const open = el("button", { cls: "attachment-image",
                                  attrs: { type: "button", tabindex: "-1", "aria-label": `View image ${attachment.name}` } }, img);
      open.addEventListener("click", () => onOpen(attachment, open));
      list.append(el("li", {}, open));
    } else {
      list.append(el("li", {}, fileChip(attachment)));
    }
  }
  return list;
}

function thumbnailBox({ width, height }) {
  // Room kept for the thumbnail before it loads, so the list does not jump (at most 240 px).
  if (!width || !height) return {};
  const scale = Math.min(1, 240 / Math.max(width, height));
  return { width: String(Math.round(width * scale)), height: String(Math.round(height * scale)) };
}

function fileChip(attachment) {
  // Named by what it shows ("Download" is read out before it), so voice control finds it by its text.
  return el("a", { cls: "file-chip", attrs: { href: attachment.url, download: attachment.name, tabindex: "-1" } },
    el("span", { cls: "visually-hidden", text: "Download " }),
    el("span", { cls: "file-icon", text: "\u{1F4C4}", attrs: { "aria-hidden": "true" } }),
    el("span", { cls: "file-name", text: attachment.name }),
    " ",
    el("span", { cls: "file-size", text: formatSize(attachment.size) }));
}

/** The image viewer: a modal dialog; Esc or Close shuts it and focus returns to the thumbnail. */
export class Lightbox {
  constructor(dialog) {
    this.dialog = dialog;
    this.image = dialog.querySelector("[data-lightbox-image]");
    this.title = dialog.querySelector("[data-lightbox-title]");
    this.download = dialog.querySelector("[data-lightbox-download]");
    this.opener = null;
    dialog.addEventListener("close", () => {
      if (dialog.open) return; // a queued close of an earlier showing, arriving after a reopen
      this.image.removeAttribute("src");
      this.opener?.focus();
      this.opener = null;
    });
    // A click on the backdrop (outside the dialog's box) closes it too.
    dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); });
  }

  open(attachment, opener) {
    this.opener = opener;
    this.title.textContent = attachment.name;
    this.image.alt = attachment.name;
    this.image.src = attachment.url;
    this.download.href = attachment.url;
    this.download.setAttribute("download", attachment.name);
    this.download.setAttribute("aria-label", `Download ${attachment.name}`);
    this.dialog.showModal();
  }
}

/**
 * The composer's files: each one added uploads at once (POST /api/v1/uploads, with its
 * progress), shows as a chip that can be taken back, and goes with the next message sent.
 */
export class AttachmentTray {
  constructor({ tray, onChange, limits }) {
    Object.assign(this, { tray, onChange, limits });
    this.items = []; // {key, file, xhr, progress, upload, error, node}
    this.conversation = null;
    this.keys = 0;
  }

  /** Switching conversations: files picked for one are not sent to another. */
  reset(conversation) {
    for (const item of this.items) this.discard(item, { quiet: true });
    this.items = [];
    this.conversation = conversation;
    this.render();
  }

  add(files) {
    const room = this.limits.max_attachments - this.items.length;
    const picked = [...files].slice(0, Math.max(room, 0));
    if (picked.length < files.length) {
      this.onChange({ message: `At most ${this.limits.max_attachments} files per message.` });
    }
    for (const file of picked) {
      const item = { key: ++this.keys, file, progress: 0, upload: null, error: null, xhr: null };
      this.items.push(item);
      if (file.size > this.limits.max_upload_bytes) {
        item.error = `Too large (at most ${formatSize(this.limits.max_upload_bytes)}).`;
      } else {
        this.upload(item);
      }
    }
    this.render();
    this.onChange({});
  }

  upload(item) {
    const form = new FormData();
    form.append("file", item.file, item.file.name || "pasted-image.png");
    if (this.conversation) form.append("conversation", String(this.conversation));
    const xhr = new XMLHttpRequest();
    item.xhr = xhr;
    xhr.open("POST", "/api/v1/uploads");
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      item.progress = Math.round((event.loaded / event.total) * 100);
      this.renderItem(item);
    });
    xhr.addEventListener("load", () => {
      item.xhr = null;
      if (xhr.status === 201) {
        item.upload = xhr.response;
        item.progress = 100;
      } else {
        const body = xhr.response || {};
        const first = body.fields && Object.values(body.fields)[0];
        item.error = (Array.isArray(first) && first[0]) || body.detail || `Upload failed (HTTP ${xhr.status}).`;
      }
      this.renderItem(item);
      this.onChange({});
    });
    xhr.addEventListener("error", () => {
      item.xhr = null;
      item.error = "Upload failed: can't reach Parley.";
      this.renderItem(item);
      this.onChange({});
    });
    xhr.send(form);
  }

  /** Uploads done and ready to go with a message. */
  ready() {
    return this.items.filter((item) => item.upload).map((item) => item.upload);
  }

  busy() {
    return this.items.some((item) => item.xhr);
  }

  /** After a send took the uploads: empty the tray (they belong to the message now). */
  sent() {
    this.items = this.items.filter((item) => !item.upload && !item.error && item.xhr);
    this.render();
  }

  discard(item, { quiet = false } = {}) {
    item.xhr?.abort();
    if (item.upload) {
      // Take it back, so it does not wait for the orphan sweep (best effort).
      fetch(`/api/v1/uploads/${item.upload.id}`, {
        method: "DELETE", credentials: "same-origin", headers: { "X-CSRFToken": csrfToken() },
      }).catch(() => {});
    }
    if (quiet) return;
    this.items = this.items.filter((other) => other !== item);
    this.render();
    this.onChange({ message: `Removed ${item.file.name || "the file"}.` });
  }

  render() {
    this.tray.hidden = !this.items.length;
    this.tray.replaceChildren(...this.items.map((item) => {
      item.node = el("li", { cls: "tray-item" });
      this.renderItem(item);
      return item.node;
    }));
  }

  renderItem(item) {
    if (!item.node) return;
    const name = item.file.name || "Pasted image";
    const preview = item.upload?.thumbnail_url
      ? el("img", { cls: "tray-thumb", attrs: { src: item.upload.thumbnail_url, alt: "" } })
      : el("span", { cls: "file-icon", text: "\u{1F4C4}", attrs: { "aria-hidden": "true" } });
    let status;
    if (item.error) {
      status = el("span", { cls: "tray-error", text: item.error });
    } else if (item.upload) {
      status = el("span", { cls: "tray-size", text: formatSize(item.upload.size) });
    } else {
      status = el("progress", { attrs: { max: "100", value: String(item.progress), "aria-label": `Uploading ${name}` } });
    }
    const remove = el("button", { cls: "tray-remove", text: "\u00d7",
                                  attrs: { type: "button", "aria-label": `Remove ${name}` } });
    remove.addEventListener("click", () => this.discard(item));
    item.node.replaceChildren(preview, el("span", { cls: "tray-name", text: name }), status, remove);
    item.node.dataset.state = item.error ? "failed" : item.upload ? "ready" : "uploading";
  }
}

/** Files dragged over `zone` show the hint; dropped ones go to `onFiles`. */
export function acceptDrops(zone, hint, onFiles) {
  let depth = 0;
  const carriesFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  zone.addEventListener("dragenter", (event) => {
    if (!carriesFiles(event)) return;
    depth += 1;
    hint.hidden = false;
  });
  zone.addEventListener("dragover", (event) => {
    if (carriesFiles(event)) event.preventDefault();
  });
  zone.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) hint.hidden = true;
  });
  zone.addEventListener("drop", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    depth = 0;
    hint.hidden = true;
    onFiles(event.dataTransfer.files);
  });
}

/** Files pasted into `input` (a screenshot from the clipboard) go to `onFiles`; text pastes as usual. */
export function acceptPastes(input, onFiles) {
  input.addEventListener("paste", (event) => {
    const pasted = [...(event.clipboardData?.files || [])];
    if (!pasted.length) return;
    event.preventDefault();
    onFiles(pasted);
  });
}
