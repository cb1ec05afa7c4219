// The invitation page: reads the invitation token from the link's fragment (browsers never send
// a fragment to a server, so the token stays out of logs and Referer headers), removes it from
// the address bar and the history, and posts it to the portal in a form body.
(function () {
  'use strict';
  var form = document.getElementById('open');
  var status = document.getElementById('status');
  var card = document.getElementById('invitation');
  if (!form || !status || !card) return;
  function open() {
    var token = new URLSearchParams(location.hash.slice(1)).get('token');
    if (!token) {
      status.textContent = 'This page needs the invitation link from your email (it ends in #token=…). ' +
        'Open that link, or ask the administrator who invited you to send the invitation again.';
      card.dataset.outcome = 'no-token';
      return;
    }
    form.elements.token.value = token;
    history.replaceState(null, '', location.pathname + location.search);
    form.submit();
  }
  window.addEventListener('hashchange', open);
  open();
})();
