// edge-seg serve: progressive enhancement only; every page works without this file.
(function () {
  "use strict";
  var root = document.documentElement;
  root.classList.add("js");

  function $(id) { return document.getElementById(id); }

  function ready(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }

  // Upload: drag and drop onto the drop zone, names of the chosen files.
  function setupUpload() {
    var form = $("upload-form"), drop = $("drop"), input = $("files"), chosen = $("chosen");
    var folder = $("folder");
    if (!form || !drop || !input) { return; }
    function chosenFiles() {
      var all = Array.prototype.slice.call(input.files);
      return folder ? all.concat(Array.prototype.slice.call(folder.files)) : all;
    }
    function showNames() {
      var files = chosenFiles(), n = files.length;
      if (!n) { chosen.textContent = ""; return; }
      var names = files.slice(0, 3).map(function (f) { return f.name; });
      chosen.textContent = n + " file" + (n > 1 ? "s" : "") + ": " + names.join(", ") + (n > 3 ? " …" : "");
    }
    input.addEventListener("change", showNames);
    if (folder) { folder.addEventListener("change", showNames); }

    // A dropped folder: walk it (hidden entries skipped) and hand its files to the input.
    function walk(entry, out) {
      if (entry.name.charAt(0) === ".") { return Promise.resolve(); }
      if (entry.isFile) {
        return new Promise(function (ok) { entry.file(function (f) { out.push(f); ok(); }, function () { ok(); }); });
      }
      var reader = entry.createReader();
      return new Promise(function (ok) {
        function more() {
          reader.readEntries(function (batch) {
            if (!batch.length) { ok(); return; }
            Promise.all(batch.map(function (e) { return walk(e, out); })).then(more);
          }, function () { ok(); });
        }
        more();
      });
    }
    function droppedFiles(dt) {
      var entries = [];
      for (var i = 0; dt.items && i < dt.items.length; i++) {
        var e = dt.items[i].webkitGetAsEntry && dt.items[i].webkitGetAsEntry();
        if (e) { entries.push(e); }
      }
      if (!entries.some(function (e) { return e.isDirectory; }) || typeof DataTransfer !== "function") {
        return Promise.resolve(dt.files);
      }
      var out = [];
      return Promise.all(entries.map(function (e) { return walk(e, out); })).then(function () {
        out.sort(function (a, b) { return a.name < b.name ? -1 : a.name > b.name ? 1 : 0; });
        var box = new DataTransfer();
        out.forEach(function (f) { box.items.add(f); });
        return box.files;
      });
    }
    ["dragenter", "dragover"].forEach(function (ev) {
      drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.add("over"); });
    });
    ["dragleave", "dragend"].forEach(function (ev) {
      drop.addEventListener(ev, function () { drop.classList.remove("over"); });
    });
    drop.addEventListener("drop", function (e) {
      e.preventDefault();
      drop.classList.remove("over");
      if (!e.dataTransfer) { return; }
      droppedFiles(e.dataTransfer).then(function (files) {
        if (!files.length) { chosen.textContent = "Nothing to upload in what was dropped."; return; }
        input.files = files;
        if (folder) { folder.value = ""; }
        showNames();
        form.requestSubmit ? form.requestSubmit() : form.submit();
      });
    });
    form.addEventListener("submit", function (e) {
      if (!chosenFiles().length) {
        e.preventDefault();
        chosen.textContent = "Choose or drop a file first.";
        return;
      }
      var button = $("submit");
      if (button) { button.disabled = true; button.textContent = "Uploading…"; }
    });
  }

  // Job page while running: poll the status, reload when done.
  function setupProgress() {
    var box = $("progress");
    if (!box) { return; }
    var url = box.getAttribute("data-status"), bar = $("bar"), text = $("progress-text");
    function poll() {
      fetch(url, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          if (s.state === "done" || s.state === "interrupted") { window.location.reload(); return; }
          bar.max = Math.max(s.total, 1);
          bar.value = s.done;
          text.textContent = s.state === "running"
            ? "Segmenting: scan " + Math.min(s.done + 1, s.total) + " of " + s.total
            : "Waiting for the scans before it…";
          window.setTimeout(poll, 700);
        })
        .catch(function () { window.setTimeout(poll, 2000); });
    }
    window.setTimeout(poll, 300);
  }

  // Result page: outline opacity, outline on/off, slice scroller.
  function setupViewer() {
    var opacity = $("opacity"), out = $("opacity-value"), toggle = $("show-mask");
    if (opacity) {
      var apply = function () {
        root.style.setProperty("--layer-opacity", String(opacity.value / 100));
        if (out) { out.textContent = opacity.value + " %"; }
      };
      opacity.addEventListener("input", apply);
      apply();
    }
    if (toggle) {
      var show = function () { root.classList.toggle("hide-layer", !toggle.checked); };
      toggle.addEventListener("change", show);
      show();
    }
    // One scroller per group (the scans, each DICOM series); the arrow keys move the group
    // last used (the first one until then).
    var groups = [], active = null;
    Array.prototype.forEach.call(document.querySelectorAll(".scroller"), function (box) {
      var group = box.parentNode, slider = box.querySelector("input.slice");
      var label = box.querySelector(".slice-label"), unit = box.getAttribute("data-unit") || "Scan";
      var scans = group.querySelectorAll("section.scan");
      var g = {
        slider: slider,
        go: function (k) {
          k = Math.max(1, Math.min(scans.length, k));
          slider.value = k;
          for (var i = 0; i < scans.length; i++) { scans[i].classList.toggle("current", i === k - 1); }
          label.textContent = scans[k - 1].getAttribute("data-position") || (unit + " " + k + " of " + scans.length);
          active = g;
        }
      };
      slider.addEventListener("input", function () { g.go(Number(slider.value)); });
      box.querySelector(".prev").addEventListener("click", function () { g.go(Number(slider.value) - 1); });
      box.querySelector(".next").addEventListener("click", function () { g.go(Number(slider.value) + 1); });
      group.addEventListener("click", function () { active = g; });
      groups.push(g);
    });
    if (!groups.length) { return; }
    document.addEventListener("keydown", function (e) {
      var g = active || groups[0];
      if (e.target && e.target.tagName === "INPUT" && e.target !== g.slider) { return; }
      if (e.key === "ArrowLeft" || e.key === "ArrowUp") { g.go(Number(g.slider.value) - 1); e.preventDefault(); }
      if (e.key === "ArrowRight" || e.key === "ArrowDown") { g.go(Number(g.slider.value) + 1); e.preventDefault(); }
    });
  }

  ready(function () { setupUpload(); setupProgress(); setupViewer(); });
})();
