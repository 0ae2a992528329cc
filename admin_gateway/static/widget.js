// "See it in your room": the widget a shop puts on its product pages (docs/widget.md).
//
//   <script src="https://GATEWAY/widget/v1/widget.js" data-key="pk_live_…" defer></script>
//   <button type="button" data-carpet-sku="KLM-001"></button>
//
// Every element with data-carpet-sku opens a dialog: take or choose a room photo, drag the four
// corners onto the floor, choose a size, see a quick preview, then a full-quality picture to
// download. It talks only to the gateway it was loaded from (no third party, no cookies), runs no
// inline script and no eval, and styles itself through a constructed stylesheet in a shadow root,
// so it works under a strict Content-Security-Policy (script-src and connect-src naming the
// gateway, img-src blob:). Texts follow the page's language: Turkish for lang="tr…", else English.
(() => {
  "use strict";

  const script = document.currentScript;
  if (!script || !script.dataset.key) {
    console.warn("carpet widget: the script tag needs data-key=\"pk_live_…\"");
    return;
  }
  const KEY = script.dataset.key;
  const BASE = new URL(script.src).origin;
  const MAX_SIDE = 2048;  // a phone's 12 MP photo is scaled down before it is sent
  const POLL_MS = 2000;
  const START = [[0.3, 0.55], [0.7, 0.55], [0.85, 0.92], [0.15, 0.92]];  // far-left, far-right, near-right, near-left

  const TEXTS = {
    en: {
      button: "See it in your room", title: "See {name} in your room", close: "Close",
      take: "Take a photo", choose: "Choose a photo",
      intro: "Take or choose a photo of your room, then drag the four corners onto the floor where the carpet should lie.",
      corner: ["Far left corner", "Far right corner", "Near right corner", "Near left corner"],
      cornerHint: "Drag, or use the arrow keys", size: "Size", preview: "Show preview",
      standard: "Full quality", download: "Download", queued: "Waiting for a free renderer…",
      processing: "Placing the carpet in your room…", done: "Here it is.",
      failed: "The picture could not be made. Please try again.",
      notPhoto: "This file is not a photo we can use: choose a JPEG or PNG.",
      tooLarge: "This photo is too large (at most 10 MB).",
      later: "Too many previews right now. Please try again later.",
      unavailable: "The preview is not available right now.",
      shop: "This shop cannot make previews right now.",
      notFound: "This carpet cannot be shown in a room.",
      result: "{name} in your room", roomPhoto: "Your room photo",
      measure: "I know a size on the floor (true size)",
      measureHint: "Put the four corners on a rectangle you know (a rug, tiles), and give its size; then drag the carpet into place.",
      measureWidth: "Its width (cm)", measureLength: "Its length (cm)",
      carpetHandle: "The carpet: drag to move, arrow keys move 5 cm, R turns it", rotate: "Turn 15°",
      move: "The carpet does not fit there: move it, turn it or choose a smaller size.",
      share: "Share", shared: "Send this link to anyone (it works for 30 days):",
      ask: "Ask the shop for a price or a home visit", name: "Your name", phone: "Phone",
      email: "E-mail (optional)", message: "Message (optional)", send: "Send",
      consent: "I agree that the shop may contact me by phone or e-mail about this request. My details are used for this request only and deleted after two years at the latest.",
      sent: "Thank you: the shop has your request and will contact you.",
      PHONE_INVALID: "Please write the phone number like 0532 123 45 67 or +90 532 123 45 67.",
      EMAIL_INVALID: "Please write the e-mail address like name@example.com, or leave it empty.",
      NAME_INVALID: "Please write your name.",
      CONSENT_REQUIRED: "Please tick the box to agree to be contacted: the shop cannot reply otherwise.",
      LEAD_ALREADY_OPEN: "You have already asked about this picture: the shop will contact you.",
    },
    tr: {
      button: "Odanda gör", title: "{name} odanızda", close: "Kapat",
      take: "Fotoğraf çek", choose: "Fotoğraf seç",
      intro: "Odanızın fotoğrafını çekin ya da seçin, sonra dört köşeyi halının duracağı yere, zemine sürükleyin.",
      corner: ["Uzak sol köşe", "Uzak sağ köşe", "Yakın sağ köşe", "Yakın sol köşe"],
      cornerHint: "Sürükleyin ya da ok tuşlarını kullanın", size: "Ölçü", preview: "Önizlemeyi göster",
      standard: "Yüksek kalite", download: "İndir", queued: "Boş bir işlemci bekleniyor…",
      processing: "Halı odanıza yerleştiriliyor…", done: "İşte odanızda.",
      failed: "Görsel oluşturulamadı. Lütfen yeniden deneyin.",
      notPhoto: "Bu dosya kullanabileceğimiz bir fotoğraf değil: JPEG ya da PNG seçin.",
      tooLarge: "Bu fotoğraf çok büyük (en fazla 10 MB).",
      later: "Şu anda çok fazla önizleme isteniyor. Lütfen daha sonra yeniden deneyin.",
      unavailable: "Önizleme şu anda kullanılamıyor.",
      shop: "Bu mağaza şu anda önizleme oluşturamıyor.",
      notFound: "Bu halı odada gösterilemiyor.",
      result: "{name} odanızda", roomPhoto: "Oda fotoğrafınız",
      measure: "Zeminde bir ölçü biliyorum (gerçek boyut)",
      measureHint: "Dört köşeyi ölçüsünü bildiğiniz bir dikdörtgene (bir kilim, fayanslar) koyun ve ölçüsünü yazın; sonra halıyı yerine sürükleyin.",
      measureWidth: "Genişliği (cm)", measureLength: "Uzunluğu (cm)",
      carpetHandle: "Halı: taşımak için sürükleyin, ok tuşları 5 cm taşır, R döndürür", rotate: "15° döndür",
      move: "Halı oraya sığmıyor: taşıyın, döndürün ya da daha küçük bir ölçü seçin.",
      share: "Paylaş", shared: "Bu bağlantıyı istediğiniz kişiye gönderin (30 gün çalışır):",
      ask: "Mağazadan fiyat ya da ev ziyareti isteyin", name: "Adınız", phone: "Telefon",
      email: "E-posta (isteğe bağlı)", message: "Mesaj (isteğe bağlı)", send: "Gönder",
      consent: "Mağazanın bu talebim hakkında benimle telefon veya e-posta ile iletişime geçmesini kabul ediyorum. Bilgilerim yalnızca bu talep için kullanılır ve en geç iki yıl sonra silinir.",
      sent: "Teşekkürler: talebiniz mağazaya ulaştı, sizinle iletişime geçecekler.",
      PHONE_INVALID: "Lütfen telefon numarasını 0532 123 45 67 ya da +90 532 123 45 67 gibi yazın.",
      EMAIL_INVALID: "Lütfen e-posta adresini ad@ornek.com gibi yazın ya da boş bırakın.",
      NAME_INVALID: "Lütfen adınızı yazın.",
      CONSENT_REQUIRED: "Lütfen iletişime geçilmesini kabul ettiğiniz kutuyu işaretleyin: aksi halde mağaza size dönemez.",
      LEAD_ALREADY_OPEN: "Bu görsel için zaten talepte bulundunuz: mağaza sizinle iletişime geçecek.",
    },
  };
  const language = () => ((document.documentElement.lang || "").toLowerCase().startsWith("tr") ? "tr" : "en");
  const text = (name, values = {}) => TEXTS[language()][name].replace(/\{(\w+)\}/g, (_, key) => values[key]);

  const STYLE = `
    :host { all: initial; }
    [hidden] { display: none !important; }
    dialog { box-sizing: border-box; width: min(760px, 100vw); max-width: 100vw; max-height: 100dvh;
      margin: auto; padding: 16px; border: 0; border-radius: 8px; overflow: auto;
      font: 16px/1.4 system-ui, sans-serif; color: #1d1d1f; background: #fff; }
    dialog::backdrop { background: rgba(0, 0, 0, .55); }
    header { display: flex; justify-content: space-between; align-items: center; gap: 8px; }
    h2 { font-size: 1.2rem; margin: 0; }
    p { margin: 8px 0; }
    button, .file { font: inherit; min-height: 44px; padding: 8px 14px; border-radius: 6px;
      border: 1px solid #1d1d1f; background: #fff; color: #1d1d1f; cursor: pointer; display: inline-flex;
      align-items: center; }
    button.primary { background: #1d1d1f; color: #fff; }
    button:focus-visible, .file:focus-within, select:focus-visible { outline: 3px solid #0a58ca; outline-offset: 2px; }
    button[disabled] { opacity: .5; cursor: default; }
    .row { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin: 8px 0; }
    .file input { position: absolute; width: 1px; height: 1px; opacity: 0; }
    .stage { position: relative; margin: 8px 0; touch-action: none; user-select: none; }
    .stage img { display: block; width: 100%; height: auto; }
    .stage svg { position: absolute; inset: 0; width: 100%; height: 100%; pointer-events: none; }
    .handle { position: absolute; width: 32px; height: 32px; min-height: 0; padding: 0; margin: -16px 0 0 -16px;
      border-radius: 50%; border: 3px solid #fff; background: #0a58ca; box-shadow: 0 0 0 1px #1d1d1f; touch-action: none; }
    .carpet-handle { background: #a5281a; }
    .rotate { margin: 0 0 8px; }
    input[type=number] { font: inherit; min-height: 44px; width: 7em; padding: 4px 8px; }
    input[type=checkbox] { width: 24px; height: 24px; }
    .result img { display: block; width: 100%; height: auto; margin: 8px 0; }
    .status { min-height: 1.4em; }
    .error { color: #a50e0e; }
    select { font: inherit; min-height: 44px; padding: 4px 8px; }
    a.download { display: inline-flex; align-items: center; min-height: 44px; color: #0a58ca; }
    form { display: grid; gap: 8px; margin: 8px 0; }
    form label { display: grid; gap: 4px; }
    form input:not([type=checkbox]), textarea { font: inherit; min-height: 44px; padding: 4px 8px; }
    .consent { display: flex; gap: 8px; align-items: flex-start; font-size: .9rem; }
    .hp { position: absolute; left: -10000px; width: 1px; height: 1px; overflow: hidden; }
    .link { overflow-wrap: anywhere; }
  `;
  const CONSENT_VERSION = "widget-1";

  // ---- the public API -----------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  // Every call names the key in the URL (no custom header, so no CORS preflight).
  const url = (path, query = {}) => {
    const address = new URL(path, BASE);
    address.searchParams.set("key", KEY);
    for (const [name, value] of Object.entries(query)) address.searchParams.set(name, value);
    return address.toString();
  };

  async function call(path, { method = "GET", body, query } = {}) {
    let response;
    try {
      response = await fetch(url(path, query), { method, body, credentials: "omit", mode: "cors" });
    } catch (failure) {
      throw new ApiError(0, "NETWORK", String(failure));
    }
    if (!response.ok) {
      let problem = {};
      try { problem = await response.json(); } catch (ignored) { /* not JSON */ }
      throw new ApiError(response.status, problem.code || String(response.status), problem.message || "");
    }
    return response;
  }

  // The funnel (docs/shares-and-leads.md): an anonymous id for this tab's visit, kept in the
  // page's sessionStorage (no cookie), and each step reported without waiting for the answer.
  function sessionId() {
    try {
      let id = sessionStorage.getItem("carpet-widget-session");
      if (!id) {
        id = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
        sessionStorage.setItem("carpet-widget-session", id);
      }
      return id;
    } catch (blocked) {
      return "";  // storage refused (private mode): steps are not counted
    }
  }

  // JSON sent as text/plain: a simple request, so no CORS preflight.
  const post = (path, document) => call(path, { method: "POST", body: JSON.stringify(document) });

  function step(type, carpetId) {
    const session = sessionId();
    if (session) post("/public/v1/events", { sessionId: session, type, carpetId }).catch(() => {});
  }

  // What the shopper reads for a refusal; what the shop's developer reads goes to the console.
  function explain(error) {
    if (["PUBLISHABLE_KEY_INVALID", "ORIGIN_NOT_ALLOWED", "NETWORK"].includes(error.code)) {
      console.warn(`carpet widget: ${error.code}: ${error.message}`
        + (error.code === "ORIGIN_NOT_ALLOWED" ? ` (this page's origin is ${window.location.origin})` : ""));
      return text("unavailable");
    }
    if (error.status === 429) return text("later");
    if (error.status === 413) return text("tooLarge");
    if (["INSUFFICIENT_CREDITS", "SPEND_LIMIT_REACHED", "ORGANIZATION_SUSPENDED"].includes(error.code)) {
      return text("shop");
    }
    if (error.status === 404) return text("notFound");
    if (error.code === "INVALID_ARGUMENT" && /room_image|PNG or JPEG|picture/i.test(error.message)) {
      return text("notPhoto");
    }
    if (error.code === "INVALID_ARGUMENT" && /leaves the photo|overlap|horizon|too small/.test(error.message)) {
      console.warn(`carpet widget: ${error.message}`);
      return text("move");
    }
    console.warn(`carpet widget: ${error.code}: ${error.message}`);
    return text("failed");
  }

  const EXTENSIONS = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp" };

  // ---- true size: the floor's homography (as render_service/floor.py computes it) ------------

  // The 3×3 matrix taking floor cm to photo fractions, from a w × l cm rectangle's corners.
  function homography(corners, width, length) {
    const source = [[0, 0], [width, 0], [width, length], [0, length]];
    const rows = [];
    source.forEach(([x, y], index) => {
      const [u, v] = corners[index];
      rows.push([x, y, 1, 0, 0, 0, -u * x, -u * y, u], [0, 0, 0, x, y, 1, -v * x, -v * y, v]);
    });
    for (let column = 0; column < 8; column += 1) {  // Gauss-Jordan with partial pivoting
      let pivot = column;
      for (let row = column + 1; row < 8; row += 1) {
        if (Math.abs(rows[row][column]) > Math.abs(rows[pivot][column])) pivot = row;
      }
      [rows[column], rows[pivot]] = [rows[pivot], rows[column]];
      if (Math.abs(rows[column][column]) < 1e-12) return null;
      for (let row = 0; row < 8; row += 1) {
        if (row === column) continue;
        const factor = rows[row][column] / rows[column][column];
        for (let k = column; k < 9; k += 1) rows[row][k] -= factor * rows[column][k];
      }
    }
    const h = rows.map((row, index) => row[8] / row[index]);
    return [[h[0], h[1], h[2]], [h[3], h[4], h[5]], [h[6], h[7], 1]];
  }

  const apply = (m, [x, y]) => {
    const w = m[2][0] * x + m[2][1] * y + m[2][2];
    return [(m[0][0] * x + m[0][1] * y + m[0][2]) / w, (m[1][0] * x + m[1][1] * y + m[1][2]) / w];
  };

  function inverse(m) {
    const [[a, b, c], [d, e, f], [g, h, i]] = m;
    const det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
    return [[(e * i - f * h) / det, (c * h - b * i) / det, (b * f - c * e) / det],
            [(f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det],
            [(d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det]];
  }

  // A carpet's corners on the floor (cm), far-left, far-right, near-right, near-left.
  function carpetCorners({ x, y, turn }, width, length) {
    const angle = (turn * Math.PI) / 180;
    const cos = Math.cos(angle), sin = Math.sin(angle);
    return [[-width / 2, -length / 2], [width / 2, -length / 2], [width / 2, length / 2], [-width / 2, length / 2]]
      .map(([dx, dy]) => [x + dx * cos - dy * sin, y + dx * sin + dy * cos]);
  }

  // ---- the dialog ---------------------------------------------------------------------------

  function element(tag, properties = {}, children = []) {
    const made = document.createElement(tag);
    for (const [name, value] of Object.entries(properties)) {
      if (name.startsWith("aria-") || name === "role") made.setAttribute(name, value);
      else made[name] = value;
    }
    made.append(...children);
    return made;
  }

  // A photo as a JPEG of at most MAX_SIDE pixels a side (null: not a picture the browser reads).
  async function scaled(file) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    } catch (failure) {
      return null;
    }
    const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
  }

  class Visualiser {
    constructor(carpet) {
      this.carpet = carpet;
      this.corners = START.map((point) => [...point]);
      this.measured = null;  // true size: { width, length } of the marked rectangle
      this.spot = null;  // the carpet's centre and turn on the measured floor, in cm
      this.photo = null;
      this.following = null;
      const host = element("div");
      host.dataset.carpetWidget = "";
      this.root = host.attachShadow({ mode: "open" });
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLE);
      this.root.adoptedStyleSheets = [sheet];
      document.body.append(host);
      this.host = host;
      this.build();
    }

    build() {
      const titleId = "carpet-widget-title";
      this.status = element("p", { className: "status", "aria-live": "polite", role: "status" });
      this.stage = element("div", { className: "stage", hidden: true });
      this.result = element("div", { className: "result" });
      this.sizes = element("select", { id: "size" });
      for (const size of this.carpet.sizes) {
        this.sizes.append(element("option", { value: size.id, textContent: `${size.widthCm} × ${size.lengthCm} cm` }));
      }
      this.previewButton = element("button", { type: "button", className: "primary", textContent: text("preview"), disabled: true });
      this.standardButton = element("button", { type: "button", textContent: text("standard"), hidden: true });
      this.previewButton.addEventListener("click", () => this.render("preview"));
      this.standardButton.addEventListener("click", () => this.render("standard"));
      const close = element("button", { type: "button", textContent: "×", "aria-label": text("close") });
      close.addEventListener("click", () => this.dialog.close());
      const picker = (label, capture) => {
        const input = element("input", { type: "file", accept: "image/jpeg,image/png" });
        if (capture) input.setAttribute("capture", "environment");
        input.addEventListener("change", () => input.files[0] && this.usePhoto(input.files[0]));
        return element("label", { className: "file" }, [input, label]);
      };
      const sizeRow = element("div", { className: "row", hidden: this.carpet.sizes.length < 2 }, [
        element("label", { htmlFor: "size", textContent: text("size") }), this.sizes]);
      this.measureToggle = element("input", { type: "checkbox", id: "measure" });
      this.measureWidth = element("input", { type: "number", id: "measure-width", min: 10, max: 5000, value: 200, inputMode: "numeric" });
      this.measureLength = element("input", { type: "number", id: "measure-length", min: 10, max: 5000, value: 300, inputMode: "numeric" });
      this.measureFields = element("div", { className: "row", hidden: true }, [
        element("p", { textContent: text("measureHint") }),
        element("label", { htmlFor: "measure-width", textContent: text("measureWidth") }), this.measureWidth,
        element("label", { htmlFor: "measure-length", textContent: text("measureLength") }), this.measureLength]);
      const measureRow = element("div", { className: "row" }, [
        this.measureToggle, element("label", { htmlFor: "measure", textContent: text("measure") })]);
      this.measureToggle.addEventListener("change", () => this.setMeasured(this.measureToggle.checked));
      for (const field of [this.measureWidth, this.measureLength]) {
        field.addEventListener("input", () => this.setMeasured(this.measureToggle.checked));
      }
      this.sizes.addEventListener("change", () => this.redraw && this.redraw());
      this.dialog = element("dialog", { "aria-labelledby": titleId }, [
        element("header", {}, [element("h2", { id: titleId, textContent: text("title", { name: this.carpet.name }) }), close]),
        element("p", { textContent: text("intro") }),
        element("div", { className: "row" }, [picker(text("take"), true), picker(text("choose"), false)]),
        this.stage, measureRow, this.measureFields, sizeRow,
        element("div", { className: "row" }, [this.previewButton, this.standardButton]),
        this.status, this.result]);
      this.dialog.addEventListener("close", () => this.dispose());
      this.root.append(this.dialog);
    }

    open() { this.dialog.showModal(); }

    dispose() {
      if (this.following) this.following.close();
      this.host.remove();
    }

    // True size: the four handles mark a rectangle of known size; the carpet, in its real
    // size, is moved and turned on that floor.
    setMeasured(on) {
      this.measureFields.hidden = !on;
      const width = Number(this.measureWidth.value), length = Number(this.measureLength.value);
      this.measured = on && width >= 1 && length >= 1 ? { width, length } : null;
      if (this.measured && !this.spot) this.spot = { x: width / 2, y: length / 2, turn: 0 };
      if (this.redraw) this.redraw();
    }

    size() {
      return this.carpet.sizes.find((one) => one.id === this.sizes.value) || this.carpet.sizes[0];
    }

    floorMatrix() {
      return this.measured && homography(this.corners, this.measured.width, this.measured.length);
    }

    say(message, error = false) {
      this.status.textContent = message;
      this.status.classList.toggle("error", error);
    }

    async usePhoto(file) {
      this.say("");
      if (file.size > 40 * 1024 * 1024) { this.say(text("tooLarge"), true); return; }
      const photo = await scaled(file);
      if (!photo) { this.say(text("notPhoto"), true); return; }
      this.photo = photo;
      step("photo_added", this.carpet.id);
      this.showStage(URL.createObjectURL(photo));
      this.previewButton.disabled = false;
    }

    showStage(source) {
      const image = element("img", { src: source, alt: text("roomPhoto") });
      const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.setAttribute("viewBox", "0 0 100 100");
      svg.setAttribute("preserveAspectRatio", "none");
      svg.setAttribute("aria-hidden", "true");
      const outline = document.createElementNS("http://www.w3.org/2000/svg", "polygon");
      outline.setAttribute("fill", "rgba(10, 88, 202, .25)");
      outline.setAttribute("stroke", "#0a58ca");
      outline.setAttribute("stroke-width", "0.6");
      const carpetOutline = document.createElementNS("http://www.w3.org/2000/svg", "polygon");
      carpetOutline.setAttribute("fill", "rgba(200, 60, 40, .35)");
      carpetOutline.setAttribute("stroke", "#a5281a");
      carpetOutline.setAttribute("stroke-width", "0.6");
      svg.append(outline, carpetOutline);
      const carpetHandle = element("button", { type: "button", className: "handle carpet-handle",
                                               "aria-label": text("carpetHandle"), hidden: true });
      const rotate = element("button", { type: "button", className: "rotate", textContent: text("rotate"), hidden: true });
      rotate.addEventListener("click", () => { this.spot.turn = (this.spot.turn + 15) % 360; draw(); });
      carpetHandle.addEventListener("pointerdown", (event) => {
        carpetHandle.setPointerCapture(event.pointerId);
        const move = (moved) => {
          const matrix = this.floorMatrix();
          if (!matrix) return;
          const box = this.stage.getBoundingClientRect();
          const [x, y] = apply(inverse(matrix), [(moved.clientX - box.left) / box.width, (moved.clientY - box.top) / box.height]);
          if (Number.isFinite(x) && Number.isFinite(y)) { this.spot.x = x; this.spot.y = y; draw(); }
        };
        const stop = () => { carpetHandle.removeEventListener("pointermove", move); carpetHandle.removeEventListener("pointerup", stop); };
        carpetHandle.addEventListener("pointermove", move);
        carpetHandle.addEventListener("pointerup", stop);
      });
      carpetHandle.addEventListener("keydown", (event) => {
        const step = { ArrowLeft: [-5, 0], ArrowRight: [5, 0], ArrowUp: [0, -5], ArrowDown: [0, 5] }[event.key];
        if (event.key === "r" || event.key === "R") { this.spot.turn = (this.spot.turn + 15) % 360; }
        else if (step) { this.spot.x += step[0]; this.spot.y += step[1]; }
        else return;
        event.preventDefault();
        draw();
      });
      const handles = this.corners.map((corner, index) => {
        const handle = element("button", { type: "button", className: "handle corner",
                                           "aria-label": `${TEXTS[language()].corner[index]}: ${text("cornerHint")}` });
        handle.addEventListener("pointerdown", (event) => {
          handle.setPointerCapture(event.pointerId);
          const move = (moved) => {
            const box = this.stage.getBoundingClientRect();
            corner[0] = Math.min(1, Math.max(0, (moved.clientX - box.left) / box.width));
            corner[1] = Math.min(1, Math.max(0, (moved.clientY - box.top) / box.height));
            draw();
          };
          const stop = () => { handle.removeEventListener("pointermove", move); handle.removeEventListener("pointerup", stop); };
          handle.addEventListener("pointermove", move);
          handle.addEventListener("pointerup", stop);
        });
        handle.addEventListener("keydown", (event) => {
          const step = { ArrowLeft: [-0.01, 0], ArrowRight: [0.01, 0], ArrowUp: [0, -0.01], ArrowDown: [0, 0.01] }[event.key];
          if (!step) return;
          event.preventDefault();
          corner[0] = Math.min(1, Math.max(0, corner[0] + step[0]));
          corner[1] = Math.min(1, Math.max(0, corner[1] + step[1]));
          draw();
        });
        return handle;
      });
      const draw = () => {
        outline.setAttribute("points", this.corners.map(([x, y]) => `${x * 100},${y * 100}`).join(" "));
        handles.forEach((handle, index) => {
          handle.style.left = `${this.corners[index][0] * 100}%`;
          handle.style.top = `${this.corners[index][1] * 100}%`;
        });
        const matrix = this.floorMatrix();
        carpetHandle.hidden = rotate.hidden = !matrix;
        outline.setAttribute("stroke-dasharray", matrix ? "1.5 1" : "");
        if (!matrix) { carpetOutline.setAttribute("points", ""); return; }
        const size = this.size();
        const corners = carpetCorners(this.spot, size.widthCm, size.lengthCm).map((point) => apply(matrix, point));
        carpetOutline.setAttribute("points", corners.map(([x, y]) => `${x * 100},${y * 100}`).join(" "));
        const [cx, cy] = apply(matrix, [this.spot.x, this.spot.y]);
        carpetHandle.style.left = `${cx * 100}%`;
        carpetHandle.style.top = `${cy * 100}%`;
      };
      this.redraw = draw;
      draw();
      this.stage.replaceChildren(image, svg, ...handles, carpetHandle);
      this.stage.after(rotate);
      this.stage.hidden = false;
    }

    async render(mode) {
      if (!this.photo) return;
      this.previewButton.disabled = true;
      this.standardButton.disabled = true;
      this.say(text("queued"));
      const form = new FormData();
      form.append("roomImage", this.photo, "room.jpg");
      form.append("carpetId", this.carpet.id);
      form.append("carpetSizeId", this.sizes.value || "0");
      form.append("mode", mode);
      const points = this.corners.map(([x, y]) => ({ x, y }));
      if (this.measured) {
        form.append("floor", JSON.stringify({ rectangle: points, widthCm: this.measured.width, lengthCm: this.measured.length }));
        form.append("carpets", JSON.stringify([{ carpetSizeId: this.size().id, centerXCm: this.spot.x,
                                                 centerYCm: this.spot.y, rotationDeg: this.spot.turn }]));
      } else {
        form.append("placement", JSON.stringify({ carpetCorners: points }));
      }
      try {
        const render = await (await call("/public/v1/renders", { method: "POST", body: form })).json();
        const done = await this.follow(render);
        if (done.status !== "success") {
          this.say(text("failed"), true);
        } else {
          await this.showResult(done, mode);
        }
      } catch (error) {
        this.say(explain(error), true);
      } finally {
        this.previewButton.disabled = false;
        this.standardButton.disabled = false;
      }
    }

    // The render's status by Server-Sent Events, or by polling when they are not available.
    follow(render) {
      const terminal = (status) => status === "success" || status === "failed";
      const show = (status) => { if (!terminal(status)) this.say(text(status === "processing" ? "processing" : "queued")); };
      return new Promise((resolve, reject) => {
        const poll = async () => {
          try {
            for (;;) {
              const now = await (await call(`/public/v1/renders/${render.id}`)).json();
              if (terminal(now.status)) { resolve(now); return; }
              show(now.status);
              await new Promise((wait) => setTimeout(wait, POLL_MS));
            }
          } catch (error) {
            reject(error);
          }
        };
        if (!window.EventSource) { poll(); return; }
        const events = new EventSource(url(`/public/v1/renders/${render.id}/events`));
        this.following = events;
        events.addEventListener("status", (event) => {
          const now = JSON.parse(event.data);
          show(now.status);
          if (terminal(now.status)) { events.close(); resolve(now); }
        });
        events.addEventListener("error", () => {
          if (events.readyState === EventSource.CLOSED) { this.following = null; poll(); }
        });
      });
    }

    async showResult(render, mode) {
      const blob = await (await call(render.imageUrl)).blob();
      const picture = URL.createObjectURL(blob);
      const image = element("img", { src: picture, alt: text("result", { name: this.carpet.name }) });
      const name = `${this.carpet.sku}-${mode}.${EXTENSIONS[blob.type] || "png"}`;
      const download = element("a", { href: picture, download: name, className: "download", textContent: text("download") });
      const share = element("button", { type: "button", textContent: text("share") });
      const ask = element("button", { type: "button", textContent: text("ask") });
      share.addEventListener("click", () => this.share(render.id, share));
      ask.addEventListener("click", () => { ask.hidden = true; this.result.append(this.leadForm(render.id)); });
      this.result.replaceChildren(image, element("div", { className: "row" }, [download, share, ask]));
      this.say(text("done"));
      step("rendered", this.carpet.id);
      if (mode === "preview") this.standardButton.hidden = false;
    }

    async share(renderId, button) {
      try {
        const link = await (await post(`/public/v1/renders/${renderId}/share`, { sessionId: sessionId() })).json();
        button.hidden = true;
        const address = element("a", { href: link.url, className: "link", textContent: link.url, target: "_blank", rel: "noopener" });
        button.after(element("p", { textContent: text("shared") }, [element("br"), address]));
        if (navigator.share) navigator.share({ title: this.carpet.name, url: link.url }).catch(() => {});
      } catch (error) {
        this.say(explain(error), true);
      }
    }

    // "Ask for a price": the shopper's details and their explicit consent to be contacted.
    leadForm(renderId) {
      const field = (name, type, attributes = {}) => {
        const input = element(type === "textarea" ? "textarea" : "input", { name, ...(type === "textarea" ? {} : { type }), ...attributes });
        return [input, element("label", {}, [text(name), input])];
      };
      const [name, nameLabel] = field("name", "text", { required: true, autocomplete: "name", maxLength: 200 });
      const [phone, phoneLabel] = field("phone", "tel", { required: true, autocomplete: "tel", maxLength: 40 });
      const [email, emailLabel] = field("email", "email", { autocomplete: "email", maxLength: 320 });
      const [message, messageLabel] = field("message", "textarea", { maxLength: 2000 });
      const trap = element("input", { name: "website", tabIndex: -1, autocomplete: "off" });
      const consent = element("input", { type: "checkbox", required: true });
      const note = element("p", { role: "status", "aria-live": "polite" });
      const form = element("form", {}, [
        element("h3", { textContent: text("ask") }), nameLabel, phoneLabel, emailLabel, messageLabel,
        element("label", { className: "hp", "aria-hidden": "true" }, ["website", trap]),
        element("label", { className: "consent" }, [consent, text("consent")]),
        element("button", { type: "submit", className: "primary", textContent: text("send") }), note]);
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        try {
          await post("/public/v1/leads", {
            renderId, name: name.value, phone: phone.value, email: email.value, message: message.value,
            website: trap.value, sessionId: sessionId(),
            // No acceptedAt: the service records the moment it arrives, not this device's clock.
            consent: { text: text("consent"), version: CONSENT_VERSION } });
          form.replaceChildren(element("p", { textContent: text("sent") }));
        } catch (error) {
          note.className = "error";
          note.textContent = TEXTS[language()][error.code] || explain(error);
        }
      });
      return form;
    }
  }

  // ---- the buttons on the page ----------------------------------------------------------------

  async function open(sku) {
    try {
      const answer = await (await call("/public/v1/carpets", { query: { sku } })).json();
      if (!answer.carpets.length) {
        console.warn(`carpet widget: no carpet with SKU ${sku} in this shop's catalogue`);
        return;
      }
      new Visualiser(answer.carpets[0]).open();
      step("opened", answer.carpets[0].id);
    } catch (error) {
      const message = explain(error);
      // The shopper is told on the button's page only for a refusal that is theirs to act on.
      if (error.status === 429) window.alert(message);
    }
  }

  function enhance(target) {
    if (target.dataset.carpetWidgetReady) return;
    target.dataset.carpetWidgetReady = "true";
    if (!target.textContent.trim()) target.textContent = text("button");
    if (target.tagName !== "BUTTON") {
      target.setAttribute("role", "button");
      target.tabIndex = 0;
      target.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); open(target.dataset.carpetSku); }
      });
    }
    target.addEventListener("click", (event) => { event.preventDefault(); open(target.dataset.carpetSku); });
  }

  const enhanceAll = () => document.querySelectorAll("[data-carpet-sku]").forEach(enhance);
  enhanceAll();
  // Pages that add products later (infinite scroll, client-side routing) get their buttons too.
  new MutationObserver(enhanceAll).observe(document.documentElement, { childList: true, subtree: true });
})();
