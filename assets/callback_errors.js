// Tell the user when the server could not answer a page update, instead of leaving the
// page as it was (a chart on "Loading…", a button that seems to do nothing).
// Dash's renderer sends every callback with fetch(); this watches those answers only.
// 500: an unexpected error, logged on the server (never shown here);
// 503: a backing service is not answering (the server's own sentence is shown).
(function () {
  "use strict";
  var UPDATE = "/_dash-update-component";
  var FAILED = "Something went wrong on the server while updating this page. " +
    "The error was logged; try again, or reload the page.";
  var original = window.fetch;
  if (!original) {
    return;
  }

  function show(message) {
    var banner = document.getElementById("kw-callback-error");
    if (!banner) {
      banner = document.createElement("div");
      banner.id = "kw-callback-error";
      banner.className = "alert alert-danger alert-dismissible shadow kw-callback-error";
      banner.setAttribute("role", "alert");
      var text = document.createElement("span");
      text.className = "kw-callback-error-text";
      var close = document.createElement("button");
      close.type = "button";
      close.className = "btn-close";
      close.setAttribute("aria-label", "Close");
      close.addEventListener("click", function () { banner.remove(); });
      banner.appendChild(text);
      banner.appendChild(close);
      document.body.appendChild(banner);
    }
    banner.querySelector(".kw-callback-error-text").textContent = message;
  }

  window.fetch = function (resource, init) {
    var url = typeof resource === "string" ? resource : (resource && resource.url) || "";
    var answer = original.apply(this, arguments);
    if (url.indexOf(UPDATE) === -1) {
      return answer;
    }
    return answer.then(function (response) {
      if (response.status === 503) {
        response.clone().json().then(function (body) {
          show(body && body.error ? body.error : FAILED);
        }, function () { show(FAILED); });
      } else if (response.status >= 500) {
        show(FAILED);
      }
      return response;
    });
  };
})();
