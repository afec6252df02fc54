// Enrolment form: a quality badge for each chosen photo before the form is sent.
// Each photo is checked by the server (POST /watchlist/check-photo) and forgotten there.
(function () {
  "use strict";
  const form = document.getElementById("enrol");
  const input = document.getElementById("photos");
  const list = document.getElementById("photo-badges");
  if (!form || !input || !list) {
    return;
  }
  const csrf = form.querySelector('input[name="csrf_token"]').value;

  function show(item, text, usable) {
    item.textContent = text;
    item.className = "badge badge-" + (usable ? "usable" : "refused");
  }

  input.addEventListener("change", function () {
    list.replaceChildren();
    Array.from(input.files).forEach(function (file) {
      const item = document.createElement("li");
      item.textContent = file.name + ": checking...";
      list.appendChild(item);
      const body = new FormData();
      body.append("csrf_token", csrf);
      body.append("photo", file);
      fetch("/watchlist/check-photo", { method: "POST", body: body, credentials: "same-origin" })
        .then(function (response) {
          if (response.status === 413) {
            return { usable: false, label: "too large", reasons: [] };
          }
          if (!response.ok) {
            throw new Error("status " + response.status);
          }
          return response.json();
        })
        .then(function (badge) {
          let text = file.name + ": " + badge.label;
          if (badge.quality !== null && badge.quality !== undefined) {
            text += " (quality " + badge.quality.toFixed(2) + ")";
          }
          if (badge.reasons && badge.reasons.length) {
            text += ": " + badge.reasons.join("; ");
          }
          show(item, text, badge.usable);
        })
        .catch(function () {
          show(item, file.name + ": could not be checked now (it is checked again when sent)", false);
        });
    });
  });
})();
