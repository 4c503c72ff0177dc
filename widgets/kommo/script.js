/*
 * CallBridge click-to-call for amoCRM / Kommo (docs/kommo.md, "Click-to-call").
 *
 * amoCRM lets a telephony widget take over the phone numbers of its cards (`add_action('phone')`):
 * a click posts the number and the clicking user's PBX extension to CallBridge's
 * `POST {bridge_url}/v1/{account}/calls` (docs/clicktocall.md), which asks the PBX to ring the
 * manager and dial the client. Plain ES5 and no dependencies but amoCRM's own: the files are zipped
 * and uploaded as they are, no build step.
 *
 * The request is built by `callRequest` alone (exported for tests/integration/test_kommo_widget.py,
 * which replays it against the route): what the route takes is decided in one place.
 */
define(['jquery'], function ($) {
  'use strict';

  // The "users" setting: {amoCRM user id: extension}, as an object or as the JSON text amoCRM
  // keeps some settings in.
  function extensionsOf(value) {
    if (!value) {
      return {};
    }
    if (typeof value === 'string') {
      try {
        return JSON.parse(value) || {};
      } catch (e) {
        return {};
      }
    }
    return value;
  }

  // The request the route takes, or null when this user or the widget is not set up.
  function callRequest(settings, userId, phone) {
    var base = String(settings.bridge_url || '').replace(/\/+$/, '');
    var extension = String(extensionsOf(settings.extensions)[String(userId)] || '').trim();
    var number = String(phone || '').trim();
    if (!/^https:\/\//.test(base) || !settings.account || !settings.api_key || !extension || !number) {
      return null;
    }
    return {
      method: 'POST',
      url: base + '/v1/' + encodeURIComponent(String(settings.account)) + '/calls',
      headers: {
        'Authorization': 'Bearer ' + String(settings.api_key),
        'Content-Type': 'application/json'
      },
      // Our route maps the extension to the PBX user through the account file's `users`.
      body: JSON.stringify({extension: extension, phone: number})
    };
  }

  var CallBridge = function () {
    var self = this;

    function say(key, detail) {
      var text = self.i18n('messages')[key] + (detail ? ': ' + detail : '');
      APP.notifications.show_message({header: self.i18n('widget').name, text: text});
    }

    function place(phone) {
      var request = callRequest(self.get_settings(), APP.constant('user').id, phone);
      if (request === null) {
        say('not_set_up');
        return;
      }
      // Straight to CallBridge (never through a proxy): the key goes to our address only.
      fetch(request.url, {
        method: request.method,
        headers: request.headers,
        body: request.body,
        mode: 'cors',
        credentials: 'omit'
      }).then(function (response) {
        return response.json().then(function (answer) {
          if (response.ok) {
            say('calling');
          } else {
            say('failed', answer && answer.error ? answer.error : String(response.status));
          }
        });
      }).catch(function () {
        say('failed');
      });
    }

    this.callbacks = {
      render: function () {
        return true;
      },
      init: function () {
        return true;
      },
      bind_actions: function () {
        self.add_action('phone', function (params) {
          place(params.value);
        });
        return true;
      },
      settings: function () {
        return true;
      },
      onSave: function () {
        return true;
      },
      destroy: function () {}
    };
    return this;
  };

  CallBridge.callRequest = callRequest;
  return CallBridge;
});
