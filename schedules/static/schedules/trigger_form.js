/*
 * The trigger form's small helpers, served locally (no CDN, no framework):
 *  - show only the fields of the chosen kind (cron / interval / once);
 *  - a preset menu that fills the cron expression;
 *  - the "next 10 fire times" table, redrawn from the REST API's cron preview endpoint
 *    (POST {expression, timezone, count} -> {valid, description, next_runs: [{utc, local, note}]}, or a 400
 *    naming the field) whenever the expression or the zone changes. The server computes every time; this
 *    script only asks and draws, so the admin, the API and beat agree on each instant and DST note.
 */
(function () {
  "use strict";

  const KIND_FIELDS = {
    cron: ["preset", "cron_expression"],
    interval: ["interval_seconds", "anchor_at"],
    once: ["run_at"],
  };
  const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const DEBOUNCE_MS = 300;

  function currentKind(form) {
    const checked = form.querySelector('input[name="kind"]:checked');
    const select = form.querySelector('select[name="kind"]');
    return checked ? checked.value : select ? select.value : "cron";
  }

  function showFieldsOf(form, kind) {
    Object.entries(KIND_FIELDS).forEach(([k, names]) => {
      names.forEach((name) => {
        const row = form.querySelector(".form-row.field-" + name) || form.querySelector(".field-" + name);
        if (row) row.hidden = k !== kind;
      });
    });
  }

  /* "Mon 9 Mar 03:00 PDT", like the server's rendering, from an ISO instant and the zone to show it in. */
  function wall(iso, zone) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})/.exec(iso || "");
    if (!m) return iso || "";
    const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
    const weekday = WEEKDAYS[new Date(Date.UTC(year, month - 1, day)).getUTCDay()];
    let text = weekday + " " + day + " " + MONTHS[month - 1];
    if (year !== new Date().getFullYear()) text += " " + year;
    text += " " + m[4] + ":" + m[5] + (m[6] !== "00" ? ":" + m[6] : "");
    return text + " " + zoneAbbreviation(iso, zone);
  }

  function zoneAbbreviation(iso, zone) {
    if (zone === "UTC") return "UTC";
    try {
      const parts = new Intl.DateTimeFormat("en-US", { timeZone: zone, timeZoneName: "short" }).formatToParts(
        new Date(iso)
      );
      const part = parts.find((p) => p.type === "timeZoneName");
      return part ? part.value : "";
    } catch (err) {
      return "";
    }
  }

  function errorMessages(body) {
    if (!body || typeof body !== "object") return ["The preview is unavailable right now."];
    const messages = [];
    Object.values(body).forEach((value) => {
      (Array.isArray(value) ? value : [value]).forEach((m) => messages.push(String(m)));
    });
    return messages.length ? messages : ["The preview is unavailable right now."];
  }

  function Preview(root) {
    this.root = root;
    this.url = root.dataset.previewUrl;
    this.count = Number(root.dataset.count || 10);
    this.description = root.querySelector(".sched-preview__description");
    this.error = root.querySelector(".sched-preview__error");
    this.table = root.querySelector(".sched-preview__table");
    this.status = root.querySelector(".sched-preview__status");
    this.sequence = 0;
  }

  Preview.prototype.showError = function (messages) {
    this.error.replaceChildren(
      ...messages.map((m) => {
        const li = document.createElement("li");
        li.textContent = m;
        return li;
      })
    );
    this.error.hidden = false;
    this.table.hidden = true;
    this.description.hidden = true;
  };

  Preview.prototype.showRuns = function (body, zone) {
    this.error.hidden = true;
    this.description.textContent = body.description || "";
    this.description.hidden = !body.description;
    const rows = (body.next_runs || []).map((run, i) => {
      const tr = document.createElement("tr");
      if (run.note) tr.className = "sched-preview__dst";
      [String(i + 1), wall(run.local, zone), wall(run.utc, "UTC"), run.note || ""].forEach((text) => {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      });
      return tr;
    });
    this.table.tBodies[0].replaceChildren(...rows);
    this.table.hidden = rows.length === 0;
  };

  /* The form's own error under the expression or zone came from the last save; once the server says the
     edited value is valid, it is stale and would only contradict the table. */
  Preview.prototype.clearStaleFieldErrors = function () {
    ["cron_expression", "timezone"].forEach((name) => {
      const row = document.querySelector(".form-row.field-" + name);
      if (!row) return;
      row.querySelectorAll("ul.errorlist").forEach((list) => (list.hidden = true));
      row.classList.remove("errors");
      row.querySelectorAll("[aria-invalid]").forEach((input) => input.removeAttribute("aria-invalid"));
    });
  };

  Preview.prototype.say = function (text) {
    this.status.textContent = text;
  };

  Preview.prototype.refresh = async function (expression, zone, csrfToken) {
    if (!this.url) return;
    const sequence = ++this.sequence;
    if (!expression.trim()) {
      this.error.hidden = true;
      this.table.hidden = true;
      this.description.hidden = true;
      this.say("Type a cron expression (or pick a preset) to see when it fires.");
      return;
    }
    this.root.classList.add("is-loading");
    let response, body;
    try {
      response = await fetch(this.url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken },
        body: JSON.stringify({ expression: expression, timezone: zone || "UTC", count: this.count }),
      });
      body = await response.json().catch(() => null);
    } catch (err) {
      response = null;
    }
    if (sequence !== this.sequence) return; // a newer edit already asked again
    this.root.classList.remove("is-loading");
    if (response && response.ok && body && body.valid !== false) {
      this.showRuns(body, zone || "UTC");
      this.clearStaleFieldErrors();
      this.say("Preview of the expression as typed; start, end and max runs apply once saved.");
    } else {
      this.showError(response ? errorMessages(body) : ["The preview is unavailable right now."]);
      this.say("");
    }
  };

  function debounce(fn, ms) {
    let timer = null;
    return function () {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    const form = document.getElementById("trigger_form");
    const root = document.getElementById("fire-time-preview");
    if (!form || !root) return;
    const preview = new Preview(root);
    const cron = form.querySelector('[name="cron_expression"]');
    const zone = form.querySelector('[name="timezone"]');
    const preset = form.querySelector('[name="preset"]');
    const csrf = form.querySelector('[name="csrfmiddlewaretoken"]');

    const refresh = () => {
      if (!cron) return;
      if (currentKind(form) !== "cron") {
        // The endpoint previews cron expressions; other kinds' times come from the server once saved.
        preview.sequence++;
        preview.say("Fire times of an interval or one-off schedule are computed when it is saved.");
        return;
      }
      preview.refresh(cron.value, zone ? zone.value.trim() : "UTC", csrf ? csrf.value : "");
    };
    const refreshSoon = debounce(refresh, DEBOUNCE_MS);

    form.querySelectorAll('[name="kind"]').forEach((input) =>
      input.addEventListener("change", () => {
        showFieldsOf(form, currentKind(form));
        refresh();
      })
    );
    showFieldsOf(form, currentKind(form));

    if (preset) {
      const expressions = JSON.parse(preset.dataset.expressions || "{}");
      preset.addEventListener("change", () => {
        if (!expressions[preset.value] || !cron) return;
        cron.value = expressions[preset.value];
        const cronRadio = form.querySelector('input[name="kind"][value="cron"]');
        if (cronRadio && !cronRadio.checked) {
          cronRadio.checked = true;
          showFieldsOf(form, "cron");
        }
        refresh();
      });
    }
    [cron, zone].forEach((input) => {
      if (!input) return;
      input.addEventListener("input", refreshSoon);
      input.addEventListener("change", refreshSoon);
    });

    // A saved trigger's table comes from the server (bounds and max runs included): keep it until edited.
    // A new trigger, or one sent back with errors, shows what is typed at once.
    const saved = root.querySelector(".sched-preview__table:not([hidden])");
    if (!saved || document.querySelector(".errornote")) refresh();
  });
})();
