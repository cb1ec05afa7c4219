// A real OpenID Connect provider for the tests (oauth2-mock-server): discovery, a JWKS with a
// freshly generated RS256 key, and a token endpoint. A token request may set the claims an
// identity provider would put in an ID token (sub, tid, email, name, aud) and its lifetime, so
// tests can sign in "as" a user of a given Microsoft 365 tenant. Prints the issuer URL as JSON
// on its first line of output, then serves on 127.0.0.1 until killed.
import { OAuth2Server } from 'oauth2-mock-server';

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
server.service.on('beforeTokenSigning', (token, req) => {
  const body = req.body ?? {};
  for (const claim of ['sub', 'tid', 'email', 'name', 'aud', 'preferred_username']) {
    if (body[claim] !== undefined) token.payload[claim] = body[claim];
  }
  if (body.lifetime_seconds !== undefined) {
    token.payload.exp = Math.floor(Date.now() / 1000) + Number(body.lifetime_seconds);
  }
});
await server.start(0, '127.0.0.1');
console.log(JSON.stringify({ issuer: server.issuer.url }));
