// "See it in your room": the widget a shop puts on its product pages (docs/widget.md).
//
//   <script src="https://GATEWAY/widget/v1/widget.js" data-key="pk_live_…" defer></script>
//   <button type="button" data-carpet-sku="KLM-001"></button>
//
// Every element with data-carpet-sku opens a dialog: take or choose a room photo, drag the four
// corners onto the floor (or measure the floor and place up to three carpets in true size),
// choose a size, see a quick preview, then a full-quality picture to download. It talks only to
// the gateway it was loaded from (no third party, no cookies), runs no inline script and no eval,
// and styles itself through a constructed stylesheet in a shadow root, so it works under a strict
// Content-Security-Policy (script-src and connect-src naming the gateway, img-src blob:). Texts
// follow the page's language: Turkish for lang="tr…", else English.
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
  const LINE_START = [[0.3, 0.8], [0.7, 0.8]];  // a length on the floor, left end first
  const VANISHING_START = [0.5, 0.3];  // where the floor's lines meet, until the shopper moves it
  const MAX_CARPETS = 3;
  const FOCAL_LENGTH_MM = 26;  // a phone's main camera in 35 mm terms, as the render service assumes

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
      measureBy: "Measured by", measureRectangle: "a rectangle (four corners)", measureLine: "a length (two points)",
      measureLineHint: "Put the two blue points on the ends of something on the floor you know the length of (a door, a rug's side), and the hollow point where the floor's lines meet (floorboards, the foot of the walls); then drag the carpet into place.",
      measureLineLength: "Its length (cm)", lineStart: "One end of the length you know", lineEnd: "Its other end",
      vanishing: "Where the floor's lines meet: drag it where the floorboards or the walls' feet would meet",
      carpetHandle: "Carpet {number}: drag to move, arrow keys move 5 cm, R turns it", rotate: "Turn 15°",
      addCarpet: "Add a carpet", removeCarpet: "Remove this carpet",
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
      measureBy: "Ölçü", measureRectangle: "bir dikdörtgen (dört köşe)", measureLine: "bir uzunluk (iki nokta)",
      measureLineHint: "İki mavi noktayı zeminde uzunluğunu bildiğiniz bir şeyin (bir kapı, bir kilimin kenarı) uçlarına, içi boş noktayı da zemindeki çizgilerin (parkeler, duvar dipleri) birleştiği yere koyun; sonra halıyı yerine sürükleyin.",
      measureLineLength: "Uzunluğu (cm)", lineStart: "Bildiğiniz uzunluğun bir ucu", lineEnd: "Öbür ucu",
      vanishing: "Zemindeki çizgilerin birleştiği yer: parkelerin ya da duvar diplerinin birleşeceği yere sürükleyin",
      carpetHandle: "Halı {number}: taşımak için sürükleyin, ok tuşları 5 cm taşır, R döndürür", rotate: "15° döndür",
      addCarpet: "Halı ekle", removeCarpet: "Bu halıyı kaldır",
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
    .carpet-handle.active { box-shadow: 0 0 0 3px #1d1d1f; }
    .vanishing { background: #fff; border-color: #0a58ca; }
    .stage.line { margin-top: 96px; }
    .stage svg { overflow: visible; }
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

  // The floor of a level phone photo measured by a line, as render_service/floor.py's
  // _line_homography: the principal point at the centre, FOCAL_LENGTH_MM over the diagonal;
  // the horizon is the level line through the vanishing point (null: a point is not below it).
  function lineHomography({ start, end, vanishing }, length, aspect) {
    if (Math.max(start[1], end[1]) > 1 || Math.min(start[1], end[1]) <= vanishing[1] + 0.005) return null;
    const width = aspect, height = 1;
    const focal = (FOCAL_LENGTH_MM / Math.hypot(36, 24)) * Math.hypot(width, height);
    const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    const scaled = (a, factor) => a.map((value) => value * factor);
    const unit = (a) => scaled(a, 1 / Math.hypot(...a));
    const ray = ([x, y]) => [(x * width - width / 2) / focal, (y * height - height / 2) / focal, 1];
    const normal = unit([0, focal, height / 2 - vanishing[1] * height]);
    const onFloor = (point) => scaled(ray(point), 1 / dot(normal, ray(point)));
    const a = onFloor(start), b = onFloor(end);
    const distance = Math.hypot(b[0] - a[0], b[1] - a[1], b[2] - a[2]);
    if (!(distance > 0)) return null;
    const origin = scaled(a, length / distance);
    const towards = unit(scaled(ray(vanishing), -1));
    const across = [towards[1] * normal[2] - towards[2] * normal[1], towards[2] * normal[0] - towards[0] * normal[2],
                    towards[0] * normal[1] - towards[1] * normal[0]];
    const column = (v) => [(focal * v[0] + (width / 2) * v[2]) / width, (focal * v[1] + (height / 2) * v[2]) / height, v[2]];
    const [x, y, o] = [column(across), column(towards), column(origin)];
    return [[x[0], y[0], o[0]], [x[1], y[1], o[1]], [x[2], y[2], o[2]]];
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
      this.line = { start: [...LINE_START[0]], end: [...LINE_START[1]], vanishing: [...VANISHING_START] };
      // True size: { kind: "rectangle", width, length } or { kind: "line", length }, in cm.
      this.measure = null;
      this.spots = [];  // the carpets on the measured floor: centre and turn in cm, and size
      this.active = 0;  // the carpet the size list, the turn button and the arrow keys act on
      this.arranged = false;  // the shopper moved, turned, added or removed a carpet
      this.aspect = null;  // the photo's width over its height, once it is shown
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
      const number = (id, value) => element("input", { type: "number", id, min: 10, max: 5000, value, inputMode: "numeric" });
      this.measureToggle = element("input", { type: "checkbox", id: "measure" });
      this.measureKind = element("select", { id: "measure-kind" }, [
        element("option", { value: "rectangle", textContent: text("measureRectangle") }),
        element("option", { value: "line", textContent: text("measureLine") })]);
      this.measureWidth = number("measure-width", 200);
      this.measureLength = number("measure-length", 300);
      this.lineLength = number("measure-line-length", 100);
      this.rectangleFields = element("div", { className: "row" }, [
        element("p", { textContent: text("measureHint") }),
        element("label", { htmlFor: "measure-width", textContent: text("measureWidth") }), this.measureWidth,
        element("label", { htmlFor: "measure-length", textContent: text("measureLength") }), this.measureLength]);
      this.lineFields = element("div", { className: "row", hidden: true }, [
        element("p", { textContent: text("measureLineHint") }),
        element("label", { htmlFor: "measure-line-length", textContent: text("measureLineLength") }), this.lineLength]);
      this.measureFields = element("div", { hidden: true }, [
        element("div", { className: "row" }, [element("label", { htmlFor: "measure-kind", textContent: text("measureBy") }), this.measureKind]),
        this.rectangleFields, this.lineFields]);
      const measureRow = element("div", { className: "row" }, [
        this.measureToggle, element("label", { htmlFor: "measure", textContent: text("measure") })]);
      this.measureToggle.addEventListener("change", () => this.setMeasured());
      // Another way of measuring has other floor coordinates: the carpets start again.
      this.measureKind.addEventListener("change", () => { this.spots = []; this.arranged = false; this.setMeasured(); });
      for (const field of [this.measureWidth, this.measureLength, this.lineLength]) {
        field.addEventListener("input", () => this.setMeasured());
      }
      this.sizes.addEventListener("change", () => {
        if (this.spots[this.active]) this.spots[this.active].sizeId = this.sizes.value;
        if (this.redraw) this.redraw();
      });
      const rotate = element("button", { type: "button", textContent: text("rotate") });
      rotate.addEventListener("click", () => this.turn());
      this.addButton = element("button", { type: "button", textContent: text("addCarpet") });
      this.addButton.addEventListener("click", () => this.addCarpet());
      this.removeButton = element("button", { type: "button", textContent: text("removeCarpet") });
      this.removeButton.addEventListener("click", () => this.removeCarpet());
      this.carpetControls = element("div", { className: "row", hidden: true }, [rotate, this.addButton, this.removeButton]);
      this.dialog = element("dialog", { "aria-labelledby": titleId }, [
        element("header", {}, [element("h2", { id: titleId, textContent: text("title", { name: this.carpet.name }) }), close]),
        element("p", { textContent: text("intro") }),
        element("div", { className: "row" }, [picker(text("take"), true), picker(text("choose"), false)]),
        this.stage, this.carpetControls, measureRow, this.measureFields, sizeRow,
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

    // True size: a rectangle (the four corner handles) or a length (two handles and where the
    // floor's lines meet) measures the floor; each carpet, in its real size, is moved and
    // turned on it (docs/widget.md).
    setMeasured() {
      const on = this.measureToggle.checked, line = this.measureKind.value === "line";
      this.measureFields.hidden = !on;
      this.rectangleFields.hidden = line;
      this.lineFields.hidden = !line;
      const width = Number(this.measureWidth.value), length = Number(this.measureLength.value);
      const lineLength = Number(this.lineLength.value);
      if (!on) this.measure = null;
      else if (line) this.measure = lineLength >= 1 ? { kind: "line", length: lineLength } : null;
      else this.measure = width >= 1 && length >= 1 ? { kind: "rectangle", width, length } : null;
      if (!this.arranged) this.spots = [];  // still where it started: it follows the measure
      if (this.redraw) this.redraw();
    }

    sizeOf(sizeId) {
      return this.carpet.sizes.find((one) => one.id === sizeId) || this.carpet.sizes[0];
    }

    floorMatrix() {
      if (!this.measure) return null;
      if (this.measure.kind === "rectangle") return homography(this.corners, this.measure.width, this.measure.length);
      return this.aspect && lineHomography(this.line, this.measure.length, this.aspect);
    }

    // The first carpet: in the middle of the rectangle, or on the middle of the line.
    firstSpot(matrix) {
      const sizeId = this.sizes.value || this.carpet.sizes[0].id;
      if (this.measure.kind === "rectangle") return { x: this.measure.width / 2, y: this.measure.length / 2, turn: 0, sizeId };
      const middle = [(this.line.start[0] + this.line.end[0]) / 2, (this.line.start[1] + this.line.end[1]) / 2];
      const [x, y] = apply(inverse(matrix), middle);
      return { x, y, turn: 0, sizeId };
    }

    setActive(index) {
      this.active = index;
      this.sizes.value = this.spots[index].sizeId;
    }

    turn() {
      const spot = this.spots[this.active];
      spot.turn = (spot.turn + 15) % 360;
      this.arranged = true;
      this.redraw();
    }

    // Another carpet (up to MAX_CARPETS), beside the last one, in the size chosen.
    addCarpet() {
      const last = this.spots[this.spots.length - 1];
      const size = this.sizeOf(this.sizes.value), lastSize = this.sizeOf(last.sizeId);
      this.spots.push({ x: last.x + (lastSize.widthCm + size.widthCm) / 2 + 10, y: last.y, turn: 0, sizeId: size.id });
      this.setActive(this.spots.length - 1);
      this.arranged = true;
      this.redraw();
    }

    removeCarpet() {
      this.spots.splice(this.active, 1);
      this.setActive(Math.max(0, this.active - 1));
      this.arranged = true;
      this.redraw();
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

    // A handle the shopper drags (or moves with the arrow keys) to a point of the photo;
    // `limits` keep it where it may go (the vanishing point may lie above the photo).
    pointHandle(className, label, point, limits = [[0, 1], [0, 1]]) {
      const handle = element("button", { type: "button", className: `handle ${className}`, "aria-label": label });
      const clamp = (value, [low, high]) => Math.min(high, Math.max(low, value));
      const moveTo = (x, y) => { point[0] = clamp(x, limits[0]); point[1] = clamp(y, limits[1]); this.redraw(); };
      handle.addEventListener("pointerdown", (event) => {
        handle.setPointerCapture(event.pointerId);
        const move = (moved) => {
          const box = this.stage.getBoundingClientRect();
          moveTo((moved.clientX - box.left) / box.width, (moved.clientY - box.top) / box.height);
        };
        const stop = () => { handle.removeEventListener("pointermove", move); handle.removeEventListener("pointerup", stop); };
        handle.addEventListener("pointermove", move);
        handle.addEventListener("pointerup", stop);
      });
      handle.addEventListener("keydown", (event) => {
        const step = { ArrowLeft: [-0.01, 0], ArrowRight: [0.01, 0], ArrowUp: [0, -0.01], ArrowDown: [0, 0.01] }[event.key];
        if (!step) return;
        event.preventDefault();
        moveTo(point[0] + step[0], point[1] + step[1]);
      });
      return handle;
    }

    // A carpet's handle: dragged over the floor (the pointer's floor point is its centre),
    // arrow keys move it 5 cm, R turns it.
    carpetHandle(index) {
      const handle = element("button", { type: "button", className: "handle carpet-handle",
                                         "aria-label": text("carpetHandle", { number: index + 1 }) });
      handle.addEventListener("pointerdown", (event) => {
        this.setActive(index);
        handle.setPointerCapture(event.pointerId);
        const move = (moved) => {
          const matrix = this.floorMatrix();
          if (!matrix) return;
          const box = this.stage.getBoundingClientRect();
          const [x, y] = apply(inverse(matrix), [(moved.clientX - box.left) / box.width, (moved.clientY - box.top) / box.height]);
          if (Number.isFinite(x) && Number.isFinite(y)) {
            Object.assign(this.spots[index], { x, y });
            this.arranged = true;
            this.redraw();
          }
        };
        const stop = () => { handle.removeEventListener("pointermove", move); handle.removeEventListener("pointerup", stop); };
        handle.addEventListener("pointermove", move);
        handle.addEventListener("pointerup", stop);
        this.redraw();
      });
      handle.addEventListener("focus", () => { this.setActive(index); this.redraw(); });
      handle.addEventListener("keydown", (event) => {
        const step = { ArrowLeft: [-5, 0], ArrowRight: [5, 0], ArrowUp: [0, -5], ArrowDown: [0, 5] }[event.key];
        const spot = this.spots[index];
        if (event.key === "r" || event.key === "R") { spot.turn = (spot.turn + 15) % 360; }
        else if (step) { spot.x += step[0]; spot.y += step[1]; }
        else return;
        event.preventDefault();
        this.arranged = true;
        this.redraw();
      });
      return handle;
    }

    showStage(source) {
      const svgNs = "http://www.w3.org/2000/svg";
      const image = element("img", { src: source, alt: text("roomPhoto") });
      image.addEventListener("load", () => { this.aspect = image.naturalWidth / image.naturalHeight; this.redraw(); });
      const svg = document.createElementNS(svgNs, "svg");
      svg.setAttribute("viewBox", "0 0 100 100");
      svg.setAttribute("preserveAspectRatio", "none");
      svg.setAttribute("aria-hidden", "true");
      const shape = (tag, fill, stroke, width = "0.6") => {
        const made = document.createElementNS(svgNs, tag);
        made.setAttribute("fill", fill);
        made.setAttribute("stroke", stroke);
        made.setAttribute("stroke-width", width);
        return made;
      };
      const outline = shape("polygon", "rgba(10, 88, 202, .25)", "#0a58ca");
      const measured = shape("polyline", "none", "#0a58ca", "1");
      const guides = shape("polyline", "none", "#0a58ca", "0.4");
      guides.setAttribute("stroke-dasharray", "1.5 1");
      const carpets = document.createElementNS(svgNs, "g");
      svg.append(outline, guides, measured, carpets);
      const cornerHandles = this.corners.map((corner, index) => this.pointHandle(
        "corner", `${TEXTS[language()].corner[index]}: ${text("cornerHint")}`, corner));
      const lineHandles = [
        this.pointHandle("line-end", text("lineStart"), this.line.start),
        this.pointHandle("line-end", text("lineEnd"), this.line.end),
        this.pointHandle("vanishing", text("vanishing"), this.line.vanishing, [[-0.5, 1.5], [-1.5, 1]])];
      const at = (handle, [x, y]) => { handle.style.left = `${x * 100}%`; handle.style.top = `${y * 100}%`; };
      const points = (list) => list.map(([x, y]) => `${x * 100},${y * 100}`).join(" ");
      let carpetHandles = [];
      const draw = () => {
        const line = Boolean(this.measure && this.measure.kind === "line");
        this.stage.classList.toggle("line", line);
        cornerHandles.forEach((handle, index) => { handle.hidden = line; at(handle, this.corners[index]); });
        const linePoints = [this.line.start, this.line.end, this.line.vanishing];
        lineHandles.forEach((handle, index) => { handle.hidden = !line; at(handle, linePoints[index]); });
        outline.setAttribute("points", line ? "" : points(this.corners));
        measured.setAttribute("points", line ? points([this.line.start, this.line.end]) : "");
        guides.setAttribute("points", line ? points([this.line.start, this.line.vanishing, this.line.end]) : "");
        const matrix = this.floorMatrix();
        outline.setAttribute("stroke-dasharray", matrix ? "1.5 1" : "");
        this.carpetControls.hidden = !matrix;
        if (matrix && !this.spots.length) this.spots.push(this.firstSpot(matrix));
        const shown = matrix ? this.spots : [];
        if (carpetHandles.length !== shown.length) {
          carpetHandles.forEach((handle) => handle.remove());
          carpetHandles = shown.map((_, index) => this.carpetHandle(index));
          this.stage.append(...carpetHandles);
          carpets.replaceChildren(...shown.map(() => shape("polygon", "rgba(200, 60, 40, .35)", "#a5281a")));
        }
        shown.forEach((spot, index) => {
          const size = this.sizeOf(spot.sizeId);
          const corners = carpetCorners(spot, size.widthCm, size.lengthCm).map((point) => apply(matrix, point));
          const polygon = carpets.children[index];
          polygon.setAttribute("points", points(corners));
          polygon.setAttribute("stroke-width", index === this.active ? "1.2" : "0.6");
          carpetHandles[index].classList.toggle("active", index === this.active);
          at(carpetHandles[index], apply(matrix, [spot.x, spot.y]));
        });
        this.addButton.hidden = this.spots.length >= MAX_CARPETS;
        this.removeButton.hidden = this.spots.length <= 1;
      };
      this.redraw = draw;
      this.stage.replaceChildren(image, svg, ...cornerHandles, ...lineHandles);
      draw();
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
      form.append("mode", mode);
      const point = ([x, y]) => ({ x, y });
      if (this.floorMatrix()) {
        const floor = this.measure.kind === "rectangle"
          ? { rectangle: this.corners.map(point), widthCm: this.measure.width, lengthCm: this.measure.length }
          : { line: { start: point(this.line.start), end: point(this.line.end), lengthCm: this.measure.length,
                      vanishingPoint: point(this.line.vanishing) } };
        form.append("carpetSizeId", this.spots[0].sizeId);
        form.append("floor", JSON.stringify(floor));
        form.append("carpets", JSON.stringify(this.spots.map((spot) => ({
          carpetSizeId: spot.sizeId, centerXCm: spot.x, centerYCm: spot.y, rotationDeg: spot.turn }))));
      } else {
        form.append("carpetSizeId", this.sizes.value || "0");
        form.append("placement", JSON.stringify({ carpetCorners: this.corners.map(point) }));
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
