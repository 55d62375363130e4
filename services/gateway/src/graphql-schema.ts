// Names and types as in the reference schema, so that its documents work verbatim.
export const typeDefs = /* GraphQL */ `
  type Query {
    "Never the url itself; with a userid, none of the pages that user clicked in the last 24 hours of their clicks."
    Recommendation(url: String!, limit: Int! = 10, fallback: Boolean = false, userid: String): [Recommendation!]
    "Without the pages the user clicked, liked or unliked, unless includeSeen."
    SimilarContent(userid: String!, limit: Int = 10, includeSeen: Boolean = false): [SimilarContent!]
    "The pages nearest in meaning to a page, for a page nobody clicked too; with a userid, none that user has seen."
    RelatedContent(url: String!, limit: Int = 10, userid: String): [SimilarContent!]
    Events(limit: Int!, offset: Int = 0): [Events!]!
    "Events a page at a time: pass the nextCursor of a page for the next one (null after the last)."
    EventsPage(limit: Int!, cursor: String): EventsPage!
    EventsLiked(userid: String!): [EventsLiked!]!
    EventsLikedPage(userid: String!, limit: Int = 1000, cursor: String): EventsLikedPage!
    "Without the pages the user clicked, liked or unliked, unless includeSeen."
    RecommendedEvents(userid: String!, limit: Int = 10, includeSeen: Boolean = false): [RecommendedEvents!]
    PersonalizedEventSearch(query: String!, userid: String!, limit: Int = 10): [PersonalizedEventSearch!]
    "Rows of the hopping windows (the reference's clickstream_aggregated), windows starting in [from, to)."
    ClickMetrics(userid: String, url: String, event: String, from: String, to: String, limit: Int = 100): [ClickMetric!]!
    ClickMetricsPage(userid: String, url: String, event: String, from: String, to: String, limit: Int = 100, cursor: String): ClickMetricsPage!
    EventMix(from: String!, to: String!): EventMix!
    Trending(window: String = "1h", event: String, limit: Int = 10): [TrendingUrl!]!
  }

  type ClickMetric {
    window_start: String!
    window_end: String!
    userid: String!
    event: String!
    url: String!
    event_count: Int!
  }

  type EventsPage {
    items: [Events!]!
    nextCursor: String
  }

  type EventsLikedPage {
    items: [EventsLiked!]!
    nextCursor: String
  }

  type ClickMetricsPage {
    rows: [ClickMetric!]!
    nextCursor: String
  }

  type EventCount {
    event: String!
    clicks: Int!
  }

  type EventMix {
    events: [EventCount!]!
    complete: Boolean!
  }

  type TrendingUrl {
    url: String!
    clicks: Int!
  }

  type Mutation {
    Likes(liked: LikedInput!): LikeAdded
    AddInterest(interest: AddInterest!): InterestAdded
    Content(event: ContentEvent!): ContentAdded
    "The reference clickstream schema calls the argument click, its documents say event: give exactly one."
    Clickstream(event: ClickEvent, click: ClickEvent): ClickAdded
    "Erasure (admin keys only): forgets what the user did; later answers for them are a new user's. Aggregate co-visit counts stay."
    DeleteUser(userid: String!): Applied!
    "Hides a page from every recommendation, or shows it again with hidden: false (admin keys only)."
    HidePage(url: String!, hidden: Boolean! = true): Applied!
  }

  "pending: the services that had not applied the change when the call answered (they apply it when they catch up)."
  type Applied {
    pending: [String!]!
  }

  type Recommendation {
    recommendation: String!
    frequency: Int!
    "With fallback: covisit, related or trending."
    source: String
  }

  type SimilarContent {
    url: String!
    title: String!
    similarity: Float!
  }

  type Events {
    id: String!
    url: String!
    title: String!
    abstract: String!
    likeCount: Int!
  }

  type EventsLiked {
    id: String!
    url: String!
    title: String!
    abstract: String!
    likeCount: Int!
  }

  type RecommendedEvents {
    id: String!
    url: String!
    title: String!
    abstract: String!
    likeCount: Int!
    score: Float!
  }

  type PersonalizedEventSearch {
    id: String!
    url: String!
    title: String!
    abstract: String!
    likeCount: Int!
    score: Float!
  }

  "eventId is an ID so that clients may send the page id as a number or as a string."
  input LikedInput {
    userid: String!
    eventId: ID!
    liked: Boolean!
  }

  input AddInterest {
    userid: String!
    text: String!
  }

  input ContentEvent {
    url: String!
    title: String!
    text: String!
    id: String
    source_time: String
  }

  "Names to texts or numbers, e.g. {site_id: s-1, viewed_percent: 42}: at most 16."
  scalar Properties

  input ClickEvent {
    userid: String!
    url: String!
    event_time: String
    event_id: String
    "The event type, e.g. add_to_cart; view when unset."
    event: String
    properties: Properties
  }

  type LikeAdded {
    _source_time: String!
    userid: String!
    eventId: String!
    liked: Boolean!
    event_id: String!
    duplicate: Boolean!
  }

  type InterestAdded {
    _source_time: String!
    userid: String!
    event_id: String!
    duplicate: Boolean!
  }

  type ContentAdded {
    _source_time: String!
    url: String!
    title: String!
    event_id: String!
    duplicate: Boolean!
  }

  type ClickAdded {
    _source_time: String!
    userid: String!
    url: String!
    event_time: String!
    event_id: String!
    duplicate: Boolean!
    event: String!
  }
`;
