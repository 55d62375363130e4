/**
 * The reference system's GraphQL documents, as they are written: the gateway's GraphQL endpoint
 * takes them verbatim (its unit tests and the integration test send them).
 */
export const DOC = {
  recommendation: `query { Recommendation(url: "https://en.wikipedia.org/wiki/Generosity%3A%20An%20Enhancement") { recommendation frequency } }`,
  similarContent: `query { SimilarContent(userid: "f5e9c688-408d-b54f-94aa-493df43dac8c") { url similarity } }`,
  addInterest: `mutation AddInterest($interest: AddInterest!) { AddInterest(interest: $interest) { _source_time } }`,
  addLike: `mutation AddLike($liked: LikedInput!) { Likes(liked: $liked) { _source_time } }`,
  recommendedEvents: `{ RecommendedEvents(userid: "1234") { id title abstract } }`,
  search: `{ PersonalizedEventSearch(query: "kafka", userid: "1234") { id title abstract } }`,
  events: `{ Events(limit: 20) { id title abstract } }`,
  content: `mutation { Content(event: {url: "https://en.wikipedia.org/wiki/Zoop", title: "Zoop", text: "Zoop is a puzzle video game …"}) { title } }`,
  clickstream: `mutation { Clickstream(event: {url: "https://en.wikipedia.org/wiki/Zoop", userid: "1"}) { userid } }`,
};
